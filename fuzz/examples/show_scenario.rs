//! Prints the scenario a `sim_schedule` input decodes to:
//! `cargo run --example show_scenario -- FILE`.
fn main() {
    let path = std::env::args().nth(1).expect("usage: show_scenario FILE");
    let data = std::fs::read(path).unwrap();
    let u = arbitrary::Unstructured::new(&data);
    match <omv_fuzz::schedule::Scenario as arbitrary::Arbitrary>::arbitrary_take_rest(u) {
        Ok(s) => println!("{s:#?}"),
        Err(e) => println!("not a scenario: {e}"),
    }
}
