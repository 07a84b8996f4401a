//! The committed TypeScript declarations in frontend/src/lib/protocol/ must be exactly what
//! the Rust protocol types generate: a change on one side without the other fails here.

#[test]
fn committed_typescript_matches_the_rust_protocol_types() {
    let dir = portcullis_protocol_ts::out_dir();
    let differ = match portcullis_protocol_ts::differences(&dir) {
        Ok(d) => d,
        Err(e) => panic!("cannot compare the TypeScript declarations: {e}"),
    };
    assert!(
        differ.is_empty(),
        "frontend/src/lib/protocol/ is out of date with helper/protocol: {}; run \
         `cargo run -p portcullis-protocol-ts` and commit the result",
        differ.join(", ")
    );
}
