//! AFL++ target `client`: [`zabkeeper::fuzzing::client`].
fn main() {
    afl::fuzz!(|data: &[u8]| zabkeeper::fuzzing::client(data));
}
