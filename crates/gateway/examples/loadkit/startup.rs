//! Time from exec to the first `GET /ready` that answers 200, polled every 200 µs.

// A blocking poll loop outside any runtime: there is no tokio clock to use here.
#![allow(clippy::disallowed_types)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const GIVE_UP: Duration = Duration::from_secs(10);

pub(crate) fn run(admin: SocketAddr, repeat: usize, command: &[String]) {
    let mut samples = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let started = Instant::now();
        let mut child = Command::new(&command[0])
            .args(&command[1..])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        let ready = loop {
            if ready(admin) {
                break Some(started.elapsed());
            }
            if started.elapsed() > GIVE_UP || matches!(child.try_wait(), Ok(Some(_))) {
                break None;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let _ = child.kill();
        let _ = child.wait();
        match ready {
            Some(took) => samples.push(took.as_secs_f64() * 1000.0),
            None => {
                println!("startup failed");
                std::process::exit(1);
            }
        }
    }
    samples.sort_by(f64::total_cmp);
    let all: Vec<String> = samples.iter().map(|s| format!("{s:.1}")).collect();
    println!(
        "startup median_ms={:.1} max_ms={:.1} all={}",
        samples[samples.len() / 2],
        samples[samples.len() - 1],
        all.join(",")
    );
}

fn ready(admin: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&admin, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream
        .write_all(b"GET /ready HTTP/1.1\r\nhost: bench\r\nconnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.1 200")
}
