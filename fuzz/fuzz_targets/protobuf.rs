//! Decoders for every protobuf message the proxy reads from a plane, plus
//! the streaming fast path, which must agree with the full decoder.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noslate_fc::proto::{
    body_only_result, GetFunctionProfileResponse, InvokeRequest, InvokeResponse, Message, PlaneHealthyResponse,
    SetFunctionProfileRequest, SetFunctionProfileResponse, SetPlatformEnvironmentVariablesResponse,
    BODY_ONLY_PREFIX_MAX,
};

/// decode → encode → decode → encode must be stable (bytes, not values:
/// NaN floats are not equal to themselves).
fn stable<T: Message>(data: &[u8]) {
    if let Ok(m) = T::decode(data) {
        let once = m.to_vec();
        assert_eq!(once.len(), m.encoded_len());
        let again = T::decode(&once).expect("re-decode of own encoding");
        assert_eq!(again.to_vec(), once);
    }
}

fuzz_target!(|data: &[u8]| {
    match InvokeResponse::decode(data) {
        Ok(m) => {
            let mut out = Vec::new();
            m.encode(&mut out);
            assert_eq!(out.len(), m.encoded_len());
            assert_eq!(InvokeResponse::decode(&out).expect("re-decode"), m);
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }
    // The fast path may only claim messages the full decoder agrees on.
    let prefix = &data[..data.len().min(BODY_ONLY_PREFIX_MAX)];
    if let Some(off) = body_only_result(prefix, data.len()) {
        match InvokeResponse::decode(data) {
            Ok(InvokeResponse::Result(r)) => {
                assert_eq!(r.status, None);
                assert!(r.headers.is_empty());
                assert_eq!(r.body, Some(&data[off..]));
            }
            other => panic!("fast path disagrees: {other:?}"),
        }
    }
    let _ = InvokeRequest::decode(data);
    if let Ok(h) = PlaneHealthyResponse::decode(data) {
        let mut out = Vec::new();
        h.encode(&mut out);
        assert_eq!(PlaneHealthyResponse::decode(&out).expect("re-decode"), h);
    }
    stable::<SetFunctionProfileRequest>(data);
    stable::<GetFunctionProfileResponse>(data);
    stable::<SetFunctionProfileResponse>(data);
    stable::<SetPlatformEnvironmentVariablesResponse>(data);
});
