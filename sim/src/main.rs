fn main() {
    println!("zabkeeper-sim");
}
