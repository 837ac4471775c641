fn main() {
    eprintln!("knockd: not implemented yet");
    std::process::exit(1);
}
