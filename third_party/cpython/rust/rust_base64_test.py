"""The Rust `_base64` built into a 3.13 interpreter, run by that interpreter.

* It is a built-in module (config.c's inittab), not a file, and behaves like
  the standard library's base64 and binascii; the same crate built as a
  shared extension module (the switch's other side) behaves the same.
* Differential: on random inputs from 0 bytes to 16 MiB, encoding matches
  binascii.b2a_base64 and decoding binascii.a2b_base64(strict_mode=True),
  and every invalid input raises the exception type binascii raises.
* Threads: many threads encode and decode shared inputs at once; every
  result is checked. On the free-threaded build they run without the GIL.

Arguments: the shared extension module's file.
"""
import base64
import binascii
import importlib.util
import random
import sys
import sysconfig
import threading
import unittest

import _base64

SHARED = sys.argv.pop(1)
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def load_shared():
    spec = importlib.util.spec_from_file_location("_base64", SHARED)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def strict(data):
    return binascii.a2b_base64(data, strict_mode=True)


def outcome(f, *args):
    """f(*args)'s value, or the type of the exception it raised."""
    try:
        return f(*args)
    except Exception as e:  # noqa: BLE001 - the type is what is compared
        return type(e)


class BuiltinTest(unittest.TestCase):
    def test_is_built_in(self):
        self.assertIn("_base64", sys.builtin_module_names)
        self.assertEqual(_base64.__spec__.origin, "built-in")
        self.assertFalse(hasattr(_base64, "__file__"))

    def test_gil_stays_off(self):
        load_shared()
        self.assertEqual(sys._is_gil_enabled(), not FREE_THREADED)

    def test_matches_base64(self):
        rng = random.Random(313)
        for n in list(range(70)) + [rng.randrange(70, 5000) for _ in range(50)]:
            data = rng.randbytes(n)
            enc = base64.standard_b64encode(data)
            self.assertEqual(_base64.standard_b64encode(data), enc)
            self.assertEqual(_base64.standard_b64encode(bytearray(data)), enc)
            self.assertEqual(_base64.standard_b64encode(memoryview(data)), enc)
            self.assertEqual(_base64.standard_b64decode(enc), data)
            self.assertEqual(_base64.standard_b64decode(enc.decode("ascii")), data)
            self.assertEqual(_base64.b64encode(data, b"-_"), base64.b64encode(data, b"-_"))
            self.assertEqual(_base64.b64encode(s=data, altchars=b"-_"), base64.urlsafe_b64encode(data))

    def test_arguments_are_parsed_like_cpython(self):
        self.assertEqual(_base64.b64encode(b"\xfb\xff", None), b"+/8=")
        self.assertEqual(_base64.standard_b64decode(data="Zm9v"), b"foo")
        for call, message in [
            (lambda: _base64.standard_b64encode(), "missing required argument 'data' (pos 1)"),
            (lambda: _base64.standard_b64encode(b"a", b"b"), "takes at most 1 argument (2 given)"),
            (lambda: _base64.standard_b64encode(b"a", bogus=1), "unexpected keyword argument 'bogus'"),
            (lambda: _base64.b64encode(b"a", s=b"b"), "given by name ('s') and position (1)"),
            (lambda: _base64.standard_b64encode("text"), ""),
            (lambda: _base64.standard_b64decode(42), ""),
        ]:
            with self.assertRaises(TypeError) as cm:
                call()
            self.assertIn(message, str(cm.exception))
        with self.assertRaises(ValueError):
            _base64.b64encode(b"a", b"abc")
        self.assertIn("b64encode", _base64.__dict__)
        self.assertIn("Encode the bytes-like object", _base64.standard_b64encode.__doc__)

    def test_shared_module_behaves_the_same(self):
        shared = load_shared()
        self.assertTrue(shared.__file__.endswith(sysconfig.get_config_var("EXT_SUFFIX")))
        self.assertIsNot(shared, _base64)
        data = bytes(range(256)) * 5
        enc = _base64.standard_b64encode(data)
        self.assertEqual(shared.standard_b64encode(data), enc)
        self.assertEqual(shared.standard_b64decode(enc), data)
        self.assertIs(outcome(shared.standard_b64decode, b"Zm9"), binascii.Error)


class DifferentialTest(unittest.TestCase):
    SIZES = [0, 1, 2, 3, 4, 5, 57, 58, 63, 64, 65, 1000, 4096, 65537, 1 << 20, (16 << 20) - 1, 16 << 20]

    def setUp(self):
        self.rng = random.Random(20261202)

    def test_random_inputs(self):
        for n in self.SIZES + [self.rng.randrange(1, 1 << 20) for _ in range(8)]:
            data = self.rng.randbytes(n)
            enc = binascii.b2a_base64(data, newline=False)
            self.assertEqual(_base64.standard_b64encode(data), enc, n)
            self.assertEqual(_base64.standard_b64decode(enc), data, n)
            self.assertEqual(strict(enc), data, n)

    def corruptions(self, enc):
        """Invalid (and some valid) variants of the encoding enc."""
        rng = self.rng
        bad_bytes = [ord(c) for c in "=!- \n\t.*~"] + [0, 0x7F, 0x80, 0xC3, 0xFF]
        yield enc[:-1]
        yield enc[:-2]
        yield enc + b"="
        yield enc + b"=="
        yield enc + b"Zg=="
        yield b"=" + enc
        for _ in range(12):
            if not enc:
                break
            pos = rng.randrange(len(enc))
            yield enc[:pos] + bytes([rng.choice(bad_bytes)]) + enc[pos + 1:]
            yield enc[:pos] + enc[pos + 1:]
            yield enc[:pos] + bytes([rng.choice(ALPHABET)]) + enc[pos:]

    def test_invalid_inputs_raise_what_binascii_raises(self):
        checked = 0
        for n in [0, 1, 2, 3, 4, 5, 6, 10, 31, 100, 4096, 1 << 20]:
            enc = binascii.b2a_base64(self.rng.randbytes(n), newline=False)
            for bad in self.corruptions(enc):
                want = outcome(strict, bad)
                self.assertEqual(outcome(_base64.standard_b64decode, bad), want, bad[:80])
                checked += 1
        for bad in [b"Z", b"Zg=", b"Zg===", b"====", b"Zm9v=", b"Zg=a", "Zg\u00e9=", "\u00e9", "Zm9v"]:
            want = outcome(strict, bad)
            self.assertEqual(outcome(_base64.standard_b64decode, bad), want, repr(bad))
        for bad in [None, 42, 3.5, object(), ["Zm9v"]]:
            self.assertIs(outcome(_base64.standard_b64decode, bad), outcome(strict, bad))
            self.assertIs(outcome(_base64.standard_b64encode, bad), outcome(binascii.b2a_base64, bad))
        self.assertGreater(checked, 300)


class ThreadsTest(unittest.TestCase):
    THREADS = 16
    ROUNDS = 40

    def test_many_threads_share_inputs(self):
        rng = random.Random(7)
        inputs = [rng.randbytes(n) for n in [0, 1, 2, 3, 100, 4096, 65536, 300000]]
        encoded = [base64.standard_b64encode(d) for d in inputs]
        texts = [e.decode("ascii") for e in encoded]
        shared = bytearray(inputs[-1])  # one buffer all threads view at once
        errors = []
        start = threading.Barrier(self.THREADS)

        def work(seed):
            r = random.Random(seed)
            try:
                start.wait()
                for _ in range(self.ROUNDS):
                    i = r.randrange(len(inputs))
                    if _base64.standard_b64encode(inputs[i]) != encoded[i]:
                        errors.append("encode %d" % i)
                    if _base64.standard_b64decode(encoded[i]) != inputs[i]:
                        errors.append("decode %d" % i)
                    if _base64.standard_b64decode(texts[i]) != inputs[i]:
                        errors.append("decode str %d" % i)
                    if _base64.standard_b64encode(memoryview(shared)) != encoded[-1]:
                        errors.append("encode shared buffer")
                    if outcome(_base64.standard_b64decode, encoded[i] + b"!") is not binascii.Error:
                        errors.append("error %d" % i)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))

        threads = [threading.Thread(target=work, args=(s,)) for s in range(self.THREADS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(sys._is_gil_enabled(), not FREE_THREADED)


if __name__ == "__main__":
    print("interpreter:", sys.version.replace("\n", " "), "free-threaded" if FREE_THREADED else "with the GIL")
    unittest.main(verbosity=2)
