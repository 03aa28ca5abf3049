"""Checks the built extension modules against the standard library.

Run by base64_test.sh with the modules' directory on PYTHONPATH, under the
interpreter whose headers they were built against.
"""
import base64
import binascii
import random
import sys
import sysconfig
import unittest

import _b16
import _base64


class Base64Test(unittest.TestCase):
    def setUp(self):
        self.rng = random.Random(20261123)

    def random_bytes(self, n):
        return bytes(self.rng.getrandbits(8) for _ in range(n))

    def test_module_file_is_the_built_extension(self):
        # Built for the interpreter running the test: its own extension suffix.
        suffix = sysconfig.get_config_var("EXT_SUFFIX")
        self.assertTrue(_base64.__file__.endswith(suffix), (_base64.__file__, suffix))
        self.assertTrue(_b16.__file__.endswith(suffix), (_b16.__file__, suffix))

    def test_encode_matches_stdlib(self):
        for n in list(range(0, 70)) + [self.rng.randrange(1, 5000) for _ in range(200)]:
            data = self.random_bytes(n)
            self.assertEqual(_base64.standard_b64encode(data), base64.standard_b64encode(data), data)
            self.assertEqual(_base64.standard_b64encode(bytearray(data)), base64.standard_b64encode(data))
            self.assertEqual(_base64.standard_b64encode(memoryview(data)), base64.standard_b64encode(data))

    def test_decode_matches_stdlib(self):
        for n in list(range(0, 70)) + [self.rng.randrange(1, 5000) for _ in range(200)]:
            enc = base64.standard_b64encode(self.random_bytes(n))
            self.assertEqual(_base64.standard_b64decode(enc), base64.standard_b64decode(enc))
            self.assertEqual(_base64.standard_b64decode(enc.decode("ascii")), base64.standard_b64decode(enc))

    def assert_both_raise(self, bad):
        with self.assertRaises(ValueError, msg=repr(bad)):
            base64.standard_b64decode(bad)
        with self.assertRaises(ValueError, msg=repr(bad)):
            _base64.standard_b64decode(bad)

    def test_invalid_input_raises(self):
        alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
        for _ in range(300):
            n = self.rng.randrange(0, 200) * 4 + self.rng.choice([1, 2, 3])
            bad = bytes(self.rng.choice(alphabet) for _ in range(n))
            self.assert_both_raise(bad)
        for bad in [b"Zm9", b"Z", b"Zg=", "Zg\u00e9=", "é"]:
            self.assert_both_raise(bad)

    def test_wrong_types_raise_type_error(self):
        for bad in [None, 42, 3.5, object()]:
            with self.assertRaises(TypeError):
                _base64.standard_b64encode(bad)
            with self.assertRaises(TypeError):
                _base64.standard_b64decode(bad)
        with self.assertRaises(TypeError):
            _base64.standard_b64encode("text is not bytes")

    def test_b16_matches_stdlib(self):
        for n in range(0, 300, 7):
            data = self.random_bytes(n)
            enc = base64.b16encode(data)
            self.assertEqual(_b16.b16encode(data), enc)
            self.assertEqual(_b16.b16decode(enc), data)
            self.assertEqual(_b16.b16decode(enc.decode("ascii")), data)
        for bad in [b"A", b"0g", b"ab", "é0"]:
            with self.assertRaises(ValueError):
                base64.b16decode(bad)
            with self.assertRaises(ValueError):
                _b16.b16decode(bad)


if __name__ == "__main__":
    unittest.main(verbosity=2)
