//! AFL++ target `config`: [`zabkeeper::fuzzing::config`].
fn main() {
    afl::fuzz!(|data: &[u8]| zabkeeper::fuzzing::config(data));
}
