//! `moto-builder ENDPOINT`: the instance emulator (`motokit::Emulator`) as
//! a process, so scripts (`ci/test.sh`) can bake on a moto server they
//! started themselves: it plays every bake builder launched there (runs
//! the user-data kiln rendered: the real install script on the real
//! payload, in a temp root) until it is killed. One line on stderr per
//! builder played.
//!
//!   moto-builder http://127.0.0.1:PORT

use std::time::Duration;

use motokit::{Emulator, EmulatorOptions};

fn main() {
    let Some(endpoint) = std::env::args().nth(1) else {
        eprintln!("usage: moto-builder http://127.0.0.1:PORT (a moto server's endpoint)");
        std::process::exit(2);
    };
    let Some(port) = endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.trim_end_matches('/').parse::<u16>().ok())
    else {
        eprintln!("moto-builder: {endpoint:?} has no port");
        std::process::exit(2);
    };
    let emulator = Emulator::start_at(endpoint.clone(), port, EmulatorOptions::default());
    eprintln!("moto-builder: playing bake builders on {endpoint}");
    let (mut seen, mut errors) = (0, 0);
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let handled = emulator.handled();
        for h in handled.iter().skip(seen) {
            match h.status {
                Some(code) => eprintln!(
                    "moto-builder: {} ran its user-data: exit {code}",
                    h.instance
                ),
                None => eprintln!("moto-builder: {} held", h.instance),
            }
        }
        seen = seen.max(handled.len());
        let errs = emulator.errors();
        for e in errs.iter().skip(errors) {
            eprintln!("moto-builder: error: {e}");
        }
        errors = errors.max(errs.len());
    }
}
