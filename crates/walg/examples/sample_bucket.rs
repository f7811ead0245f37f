//! Writes the demo bucket: `cargo run -p walg --features testkit --example sample_bucket -- DIR`.

fn main() {
    let Some(dir) = std::env::args().nth(1) else {
        eprintln!("usage: sample_bucket DIR");
        std::process::exit(2);
    };
    match walg::testkit::sample_bucket(std::path::Path::new(&dir)) {
        Ok(url) => println!("{url}"),
        Err(e) => {
            eprintln!("error: cannot write the sample bucket in {dir}: {e}");
            std::process::exit(1);
        }
    }
}
