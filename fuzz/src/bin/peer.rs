//! AFL++ target `peer`: [`zabkeeper::fuzzing::peer`].
fn main() {
    afl::fuzz!(|data: &[u8]| zabkeeper::fuzzing::peer(data));
}
