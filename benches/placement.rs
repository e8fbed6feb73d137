//! Placement and allocate/free at 10, 1,000 and 10,000 nodes.
//!
//! `place/*`: one placement decision (`Fleet::place`) on a fleet of mixed sizes and
//! fill levels. `start_stop/*`: a whole allocate/free cycle through the engine's public
//! API (start request placed, container started, stop request, container exited).

use conductor_core::config::{Config, PlacementStrategy};
use conductor_core::*;
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion};

fn fleet(nodes: u32, strategy: PlacementStrategy) -> (Conductor, Vec<NodeId>) {
    let mut cfg = Config::default();
    cfg.placement.strategy = strategy;
    cfg.startup_delay_s = 0;
    cfg.scaling.enabled = false;
    let mut c = Conductor::new(cfg, Millis(0)).unwrap();
    let sizes = [16384u32, 32768, 65536, 131072];
    let mut ids = Vec::new();
    for i in 0..nodes {
        let spec = NodeSpec {
            name: format!("n{i}"),
            address: String::new(),
            kind: if i % 3 == 0 { NodeKind::Cloud } else { NodeKind::Dedicated },
            system: false,
            total_ram_mb: sizes[(i % 4) as usize],
            cores: 8,
            hourly_eur: 0.0,
            labels: Default::default(),
            provider_id: None,
            server_type: None,
        };
        let Reply::NodeRegistered(id) = c.handle(Millis(0), Input::NodeRegistered(spec)) else { unreachable!() };
        ids.push(id);
    }
    c.handle_timeout(Millis(0));
    while c.poll_command().is_some() {}
    for &id in &ids {
        c.handle(Millis(0), Input::HealthProbes { results: vec![(id, true)] });
    }
    while c.poll_command().is_some() {}
    // Fill the fleet to about 60 % with 2-8 GB servers.
    let mut server = 0u64;
    let target: u64 = c.fleet().iter().map(|n| n.usable_mb(&c.config().reserve)).sum::<u64>() * 6 / 10;
    while c.allocated_mb() < target {
        let ram = [2048u32, 4096, 8192][(server % 3) as usize];
        c.handle(
            Millis(0),
            Input::StartRequested {
                server: ServerId(server),
                ram_mb: ram,
                plan: Plan::PayPerPlay,
                user: UserId(server),
            },
        );
        server += 1;
    }
    while c.poll_command().is_some() {}
    (c, ids)
}

fn bench(cr: &mut Criterion) {
    let mut g = cr.benchmark_group("place");
    for n in [10u32, 1_000, 10_000] {
        for (name, strategy) in [("spread", PlacementStrategy::Spread), ("best_fit", PlacementStrategy::BestFit)] {
            let (c, _) = fleet(n, strategy);
            let mut i = 0u32;
            g.bench_with_input(BenchmarkId::new(name, n), &n, |b, _| {
                b.iter(|| {
                    i = i.wrapping_add(1);
                    let ram = [1024u32, 2048, 4096, 8192][(i % 4) as usize];
                    black_box(c.fleet().place(black_box(ram)))
                })
            });
        }
    }
    g.finish();

    let mut g = cr.benchmark_group("start_stop");
    for n in [10u32, 1_000, 10_000] {
        let (mut c, _) = fleet(n, PlacementStrategy::default());
        let mut t = 1u64;
        let id = ServerId(u64::MAX / 2);
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                t += 1;
                let r = c.handle(
                    Millis(t),
                    Input::StartRequested { server: id, ram_mb: 1024, plan: Plan::PayPerPlay, user: UserId(1) },
                );
                let Reply::Start(StartReply::Placed { node }) = r else { panic!("{r:?}") };
                c.handle(Millis(t), Input::ContainerStarted { server: id, node });
                c.handle(Millis(t), Input::StopRequested { server: id });
                c.handle(Millis(t), Input::ContainerExited { server: id, node });
                while c.poll_command().is_some() {}
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
