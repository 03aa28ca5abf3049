fn main() {
    println!("{} ({})", gen::GREETING, gen::answer());
}
