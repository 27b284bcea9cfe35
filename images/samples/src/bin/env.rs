//! Prints its environment, sorted, one `KEY=VALUE` per line.
fn main() {
    let mut vars: Vec<_> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    vars.sort();
    for var in vars {
        println!("{var}");
    }
}
