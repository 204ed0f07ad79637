// A Rust client for kwarp's outgoing tests (std only: its resolver is glibc's getaddrinfo).
//   client tcp HOST PORT   std::net::TcpStream, print the first line
use std::io::{BufRead, BufReader};
use std::net::TcpStream;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 || args[1] != "tcp" {
        eprintln!("usage: client tcp HOST PORT");
        std::process::exit(2);
    }
    let port: u16 = args[3].parse().expect("port");
    let s = TcpStream::connect((args[2].as_str(), port)).unwrap_or_else(|e| {
        eprintln!("connect: {e}");
        std::process::exit(1)
    });
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).expect("read");
    println!("{}", line.trim_end());
}
