fn main() {
    println!("zabkeeper");
}
