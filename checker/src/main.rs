fn main() {
    println!("zabkeeper-check");
}
