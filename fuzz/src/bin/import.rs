//! AFL++ target `import`: [`zabkeeper::fuzzing::import`].
fn main() {
    afl::fuzz!(|data: &[u8]| zabkeeper::fuzzing::import(data));
}
