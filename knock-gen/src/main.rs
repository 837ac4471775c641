fn main() {
    eprintln!("knock-gen: not implemented yet");
    std::process::exit(1);
}
