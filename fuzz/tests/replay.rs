//! `OMV_FUZZ_REPLAY=target:FILE cargo test --test replay -- --nocapture`
//! replays one input through a target's check (with OMV_FUZZ_TRACE=1 for
//! `sim_schedule`'s operation trace, or the DST's log for `dst`).

#[test]
fn replay() {
    let Some(spec) = std::env::var_os("OMV_FUZZ_REPLAY") else {
        return;
    };
    let spec = spec.into_string().unwrap();
    let (target, file) = spec.split_once(':').expect("OMV_FUZZ_REPLAY=target:FILE");
    let data = std::fs::read(file).unwrap();
    match target {
        "framer_host" => omv_fuzz::framer::check(omv_proto::framer::Role::Host, &data),
        "framer_device" => omv_fuzz::framer::check(omv_proto::framer::Role::Device, &data),
        "decoders" => omv_fuzz::decoders::check(&data),
        "device_endpoint" => omv_fuzz::device::check(&data),
        "host_endpoint" => omv_fuzz::host::check(&data),
        "sim_schedule" => {
            let u = arbitrary::Unstructured::new(&data);
            let s = <omv_fuzz::schedule::Scenario as arbitrary::Arbitrary>::arbitrary_take_rest(u)
                .unwrap();
            omv_fuzz::schedule::check(s);
        }
        "dst" => omv_fuzz::dst::check(&data),
        other => panic!("unknown target {other}"),
    }
}
