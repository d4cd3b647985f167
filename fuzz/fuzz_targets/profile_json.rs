//! Profile and platform-env JSON from arbitrary bytes: never panics, and
//! whatever validates survives the protobuf round trip unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use noslate_fc::profile::{encode_set_function_profile, encode_set_platform_env, parse_platform_env, parse_profiles};
use noslate_fc::proto::{Message, SetFunctionProfileRequest, SetPlatformEnvironmentVariablesRequest};

fuzz_target!(|data: &[u8]| {
    match parse_profiles(data) {
        Ok(profiles) => {
            let mut buf = Vec::new();
            encode_set_function_profile(&profiles, &mut buf);
            let back = SetFunctionProfileRequest::decode(&buf).expect("decode own encoding");
            assert_eq!(back.profiles, profiles);
        }
        Err(e) => assert!(!e.to_string().contains('\n')),
    }
    match parse_platform_env(data) {
        Ok(envs) => {
            let mut buf = Vec::new();
            encode_set_platform_env(&envs, &mut buf);
            let back = SetPlatformEnvironmentVariablesRequest::decode(&buf).expect("decode");
            assert_eq!(back.envs.len(), envs.len());
            assert!(back.to_vec() == buf);
        }
        Err(e) => assert!(!e.to_string().contains('\n')),
    }
});
