use punktfunk_bench::fec::Gf8Workload;
use punktfunk_bench::time_per_call;
use punktfunk_engine::fec::Kernel;
use std::time::Duration;
fn main() {
    for (d, p) in [(100usize, 20usize), (191, 39), (212, 43), (50, 10)] {
        for k in [Kernel::Avx2, Kernel::Avx512Gfni] {
            let mut w = Gf8Workload::new(d, p, 1408, k);
            let t = time_per_call(|| w.encode_ours(), Duration::from_millis(50), 5);
            let ops = (d * p * 1408) as f64;
            println!(
                "{d}+{p} {k}: {:.1}us  {:.1} Gop/s",
                t.as_secs_f64() * 1e6,
                ops / t.as_secs_f64() / 1e9
            );
        }
    }
}
