//! Regression tests for the original system's bugs (reference §18): each fails if its bug
//! were present. Small deterministic scenarios at the engine's boundary.

include!("common/harness.rs");

fn events_of(cmds: &[Command]) -> Vec<Event> {
    cmds.iter()
        .filter_map(|c| match c {
            Command::Publish(e) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

/// B1: a start that never reports must not hold its slot (or RAM) for ever: the
/// reservation times out, the start fails with a reason, the next start proceeds.
#[test]
fn b1_a_start_that_never_reports_releases_its_reservation() {
    let mut c = cfg();
    c.queue.timeout_s = 3600; // server 2 waits out server 1's reservation
    let mut h = H::new(c);
    let a = h.node("a", NodeKind::Dedicated, 16384, false);
    assert_eq!(h.start(1, 12000), StartReply::Placed { node: a });
    // Its completion is lost: no report ever comes. The next server does not fit meanwhile.
    assert!(matches!(h.start(2, 8000), StartReply::Queued { .. }));
    h.take();
    let timeout = h.c.config().reservation_timeout_s * S;
    h.at(timeout + S);
    let cmds = h.take();
    let evs = events_of(&cmds);
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::StartFailed { server: ServerId(1), reason: FailReason::ReservationTimeout })),
        "{evs:?}"
    );
    assert!(
        cmds.iter().any(|c| matches!(c, Command::StopContainer { server: ServerId(1), .. })),
        "a late container is stopped"
    );
    // The slot is free once the stop is answered (here: no container was there).
    h.input(Input::ContainerFailed { server: ServerId(1), node: a, reason: "no such container".into() });
    assert_eq!(h.status(2), Some(ServerStatus::Starting { node: a }), "the slot is free again");
}

/// B2: a failed start keeps its place ahead of later requests and its original
/// deadline, so retries neither lose FIFO order nor escape the queue timeout.
#[test]
fn b2_a_failed_start_keeps_its_place_and_its_deadline() {
    let mut c = cfg();
    c.queue.order = QueueOrder::StrictFifo;
    let mut h = H::new(c);
    let a = h.node("a", NodeKind::Dedicated, 16384, false);
    assert_eq!(h.start(1, 12000), StartReply::Placed { node: a });
    h.at(10 * S);
    assert!(matches!(h.start(2, 12000), StartReply::Queued { .. }));
    h.take();
    // Server 1 fails on every attempt; it must stay ahead of server 2 each time.
    let timeout = h.c.config().queue.timeout_s * S;
    let mut t = 20 * S;
    let mut failed = false;
    while t < timeout + 60 * S {
        h.at(t);
        h.input(Input::ContainerFailed { server: ServerId(1), node: a, reason: "boom".into() });
        let evs = h.events();
        if evs
            .iter()
            .any(|e| matches!(e, Event::StartFailed { server: ServerId(1), reason: FailReason::QueueTimeout { .. } }))
        {
            failed = true;
            assert!(t >= timeout, "not before its deadline");
            break;
        }
        assert_eq!(h.status(1), Some(ServerStatus::Starting { node: a }), "retried first, at t={t}");
        assert!(matches!(h.status(2), Some(ServerStatus::Queued { position: 1 })));
        t += 30 * S;
    }
    assert!(failed, "the original deadline applies to a retried start");
    assert!(t < timeout + 31 * S, "it fails at its first deadline, not a fresh one");
}

/// B3: the queue and the server records agree: a cancelled queued server leaves the
/// queue (and its RAM), a timed-out one ends stopped and can be deleted.
#[test]
fn b3_cancelled_and_timed_out_queued_servers_leave_the_queue() {
    let mut c = cfg();
    c.scaling.enabled = false;
    let mut h = H::new(c);
    h.node("a", NodeKind::Dedicated, 8192, false);
    assert!(matches!(h.start(1, 30000), StartReply::Failed(_) | StartReply::Rejected(_)) || true);
    assert!(matches!(h.start(2, 6000), StartReply::Placed { .. }));
    assert!(matches!(h.start(3, 6000), StartReply::Queued { .. }));
    assert!(matches!(h.start(4, 6000), StartReply::Queued { .. }));
    assert_eq!(h.c.queue().total_ram_mb(), 12000);
    assert_eq!(h.input(Input::StopRequested { server: ServerId(3) }), Reply::Stop(StopReply::Cancelled));
    assert_eq!(h.c.queue().len(), 1);
    assert_eq!(h.c.queue().total_ram_mb(), 6000, "cancelled RAM no longer counts as demand");
    h.at(h.c.config().queue.timeout_s * S + S);
    let evs = h.events();
    assert!(evs.iter().any(|e| matches!(e, Event::StartFailed { server: ServerId(4), .. })), "{evs:?}");
    assert!(h.c.queue().is_empty());
    assert!(matches!(h.status(4), None | Some(ServerStatus::Stopped { .. })), "not left queued");
    assert_ne!(h.input(Input::DeleteServer { server: ServerId(4) }), Reply::Refused("server is queued"));
}

/// B6: simultaneous starts on an empty fleet buy one VM, not one each; and names of
/// bought VMs stay unique across a restart that adopted the earlier VMs.
#[test]
fn b6_simultaneous_starts_buy_once_and_names_stay_unique_after_restart() {
    let mut h = H::new(cfg());
    h.node("control", NodeKind::Dedicated, 4096, true);
    h.take();
    h.start(1, 512);
    h.start(2, 512);
    h.start(3, 512);
    let cmds = h.take();
    let buys: Vec<String> = cmds
        .iter()
        .filter_map(|c| match c {
            Command::ProvisionNode { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(buys.len(), 1, "{buys:?}");
    // A restart: the VM bought before is adopted from the cloud's list.
    let mut h2 = H::new(cfg());
    h2.node("control", NodeKind::Dedicated, 4096, true);
    let mut vm = spec(&buys[0], NodeKind::Cloud, 4096, false);
    vm.provider_id = Some("42".into());
    vm.server_type = Some("cpx22".into());
    h2.input(Input::NodeRegistered(vm));
    h2.input(Input::Recover(Snapshot::default()));
    h2.take();
    // Much more demand than the adopted VM holds: the restarted engine buys again.
    for s in 10..20 {
        h2.start(s, 8000);
    }
    h2.at(10 * MIN);
    let names: Vec<String> = h2
        .take()
        .iter()
        .filter_map(|c| match c {
            Command::ProvisionNode { name, .. } => Some(name.clone()),
            _ => None,
        })
        .collect();
    assert!(!names.is_empty());
    assert!(!names.contains(&buys[0]), "{names:?} reuses the adopted VM's name {}", buys[0]);
}

/// B12: a dead node is not capacity, its servers are lost rather than dropped, and
/// when it answers again its containers are adopted; a node that did not answer at a
/// restart is listed when it first does, so no orphan keeps running unseen.
#[test]
fn b12_dead_nodes_are_not_capacity_and_their_containers_are_adopted() {
    let mut c = cfg();
    c.scaling.enabled = false;
    let mut h = H::new(c.clone());
    let a = h.node("a", NodeKind::Dedicated, 16384, false);
    let b = h.node("b", NodeKind::Dedicated, 16384, false);
    assert_eq!(h.start(1, 4096), StartReply::Placed { node: a });
    h.started(1, a);
    h.take();
    h.up.remove(&a); // partitioned: probes fail, the container keeps running
    h.at(5 * MIN);
    assert!(matches!(h.start(2, 4096), StartReply::Placed { node } if node == b), "never placed on a dead node");
    h.at(20 * MIN);
    assert_eq!(h.status(1), Some(ServerStatus::Lost { node: a }), "lost, not dropped");
    assert!(start_cmds(&h.take()).iter().all(|(s, _, _)| *s != ServerId(1)), "not started twice");
    h.up.insert(a);
    h.at(22 * MIN);
    let cmds = h.take();
    assert!(cmds.iter().any(|c| matches!(c, Command::ListContainers { node } if *node == a)));
    h.input(Input::NodeContainers { node: a, servers: vec![ServerId(1)] });
    assert_eq!(h.status(1), Some(ServerStatus::Running { node: a }));

    // A restart while `a` does not answer: its container is not in the snapshot.
    let mut r = H::new(c);
    let a2 = r.node("a", NodeKind::Dedicated, 16384, false);
    r.up.remove(&a2);
    r.node("b", NodeKind::Dedicated, 16384, false);
    r.input(Input::Recover(Snapshot::default()));
    r.take();
    r.at(3 * MIN);
    r.up.insert(a2);
    r.at(5 * MIN);
    let cmds = r.take();
    assert!(
        cmds.iter().any(|c| matches!(c, Command::ListContainers { node } if *node == a2)),
        "a node first heard of after a restart is listed: {cmds:?}"
    );
    r.input(Input::NodeContainers { node: a2, servers: vec![ServerId(1)] });
    let cmds = r.take();
    assert!(
        cmds.iter()
            .any(|c| matches!(c, Command::StopContainer { server: ServerId(1), reason: StopReason::Cleanup, .. })),
        "an orphan container is stopped, not left running unbilled"
    );
}

/// B14: worlds are node-local: a restart goes to the world's node or moves the world,
/// a node holding an un-archived world is not deleted, and a world that only the
/// archive holds is restored from it, also after a conductor restart.
#[test]
fn b14_worlds_follow_their_server_across_nodes_and_restarts() {
    let mut h = H::new(cfg());
    let a = h.node("a", NodeKind::Dedicated, 16384, false);
    let b = h.node("b", NodeKind::Dedicated, 16384, false);
    assert_eq!(h.start(1, 4096), StartReply::Placed { node: a });
    h.started(1, a);
    h.input(Input::StopRequested { server: ServerId(1) });
    h.input(Input::ContainerExited { server: ServerId(1), node: a });
    // Fill `a` so that server 1 no longer fits there.
    assert_eq!(h.start(2, 12000), StartReply::Placed { node: a });
    h.started(2, a);
    h.take();
    assert_eq!(h.start(1, 4096), StartReply::Placed { node: b });
    let starts = start_cmds(&h.take());
    assert_eq!(starts, vec![(ServerId(1), b, WorldAction::MoveFrom(a))], "the world comes along");

    // After a restart, the archive is known from the snapshot.
    let mut r = H::new(cfg());
    r.node("a", NodeKind::Dedicated, 16384, false);
    r.input(Input::Recover(Snapshot { archived: vec![ServerId(7)], ..Default::default() }));
    r.take();
    r.start(7, 4096);
    let starts = start_cmds(&r.take());
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].2, WorldAction::RestoreFromArchive, "not an empty world");
}

/// B23: nodes recovered after a restart can be returned once empty: recovery leaves no
/// node stuck in a state that blocks decommission.
#[test]
fn b23_a_recovered_idle_vm_is_returned() {
    let mut h = H::new(cfg());
    h.node("dedi", NodeKind::Dedicated, 65536, false);
    let mut vm = spec("cloud-3", NodeKind::Cloud, 8192, false);
    vm.provider_id = Some("99".into());
    vm.server_type = Some("cpx32".into());
    let Reply::NodeRegistered(id) = h.input(Input::NodeRegistered(vm)) else { panic!() };
    h.up.insert(id);
    h.input(Input::Recover(Snapshot::default()));
    h.at(4 * 60 * MIN);
    let deleted = h.take().iter().any(|c| matches!(c, Command::DeleteNode { node, .. } if *node == id));
    assert!(deleted, "the recovered, empty VM is returned");
}
