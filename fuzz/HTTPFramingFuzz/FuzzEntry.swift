/// libFuzzer's entry point. The first byte of an input picks what to fuzz and how; the rest is the bytes
/// a peer sent:
///
/// - `selector & 3 == 0`: a request head (`headLength`, `parseRequest`); bit 2 picks an IPv6 client;
/// - `1`: a response head (`parseResponse`); bits 2–4 are isHeadRequest, clientKeepAlive, clientIsHTTP11;
/// - `2`: a body (`BodyTracker`); bit 2 picks Content-Length framing (length from the next two bytes)
///   instead of chunked;
/// - `3`: a connection's bytes read however they are split: with bit 2 clear, a client's pipelined
///   requests and their bodies, read the way HTTPProxyHandler reads them; with bit 2 set, an upstream's
///   interim and final responses, read the way UpstreamConnection reads them (bits 3–4: isHeadRequest,
///   clientIsHTTP11).
///
/// The upper bits seed where the bytes are split into reads. Every mode checks properties, not only
/// "no crash"; a broken property stops the run with `fatalError` naming it.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzHTTPFraming(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    guard let data, size > 0 else { return 0 }
    let input = UnsafeRawBufferPointer(start: data, count: size)
    FramingFuzz.check(selector: input[0], payload: UnsafeRawBufferPointer(rebasing: input[1...]))
    return 0
}
