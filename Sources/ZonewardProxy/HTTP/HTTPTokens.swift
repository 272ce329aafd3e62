// The bytes of an HTTP token, in a file of its own (no dependencies) so both fuzzers build it with the
// parsers that use it (fuzz/HTTPFramingFuzz, fuzz/H2FramingFuzz).

enum HTTPTokens {
    /// RFC 9110 tchar: DIGIT, ALPHA and ! # $ % & ' * + - . ^ _ ` | ~.
    @inline(__always)
    static func isTokenCharacter(_ byte: UInt8) -> Bool {
        // A bitmap of the 128 ASCII bytes (bit n of the pair is byte n): a shift and a mask per byte, where
        // the switch compiled to a chain of range tests.
        byte < 64
            ? (tokenBitsLow >> UInt64(byte)) & 1 != 0 : (tokenBitsHigh >> UInt64(byte & 63)) & 1 != 0 && byte < 128
    }

    /// tchar other than an uppercase letter: what an HTTP/2 field name is made of (RFC 9113 §8.2.1).
    @inline(__always)
    static func isLowercaseTokenCharacter(_ byte: UInt8) -> Bool {
        byte < 64
            ? (tokenBitsLow >> UInt64(byte)) & 1 != 0
            : (lowercaseTokenBitsHigh >> UInt64(byte & 63)) & 1 != 0 && byte < 128
    }

    /// Bytes 64–127 that are tchar, but for A–Z (bits 1–26).
    @inline(__always) private static var lowercaseTokenBitsHigh: UInt64 { 0x57FF_FFFF_C000_0000 }

    /// Bytes 0–63 and 64–127 that are tchar.
    @inline(__always) private static var tokenBitsLow: UInt64 { 0x03FF_6CFA_0000_0000 }
    @inline(__always) private static var tokenBitsHigh: UInt64 { 0x57FF_FFFF_C7FF_FFFE }
}
