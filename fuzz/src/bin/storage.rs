//! AFL++ target `storage`: [`zabkeeper::fuzzing::storage`].
fn main() {
    afl::fuzz!(|data: &[u8]| zabkeeper::fuzzing::storage(data));
}
