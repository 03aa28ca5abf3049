fn main() {
    println!("{}", native::triple(14));
}
