//! The hcloud-based client against the emulator on 127.0.0.1:0.

use std::time::Duration;

use conductor_live::hetzner::emulator::Fault;
use conductor_live::hetzner::ServerStatus;
use conductor_live::hetzner::{
    cloud_init, CloudError, CloudInit, CreateServer, Emulator, EmulatorConfig, HetznerClient,
};

const TOKEN: &str = "s3cr3t-token-for-tests-0123456789";

async fn start(cfg: EmulatorConfig) -> (Emulator, HetznerClient) {
    let (emu, base) = start_raw(cfg).await;
    (emu, HetznerClient::new(&base, TOKEN.into()))
}

/// The emulator and its base URL (`http://127.0.0.1:PORT/v1`).
async fn start_raw(cfg: EmulatorConfig) -> (Emulator, String) {
    let emu = Emulator::new(EmulatorConfig { token: Some(TOKEN.into()), ..cfg });
    let addr = emu.spawn_local().await.expect("bind emulator");
    (emu, format!("http://{addr}/v1"))
}

fn req(name: &str) -> CreateServer {
    CreateServer {
        name: name.into(),
        server_type: "cpx22".into(),
        image: "ubuntu-24.04".into(),
        location: Some("fsn1".into()),
        ..Default::default()
    }
}

fn assert_no_token(e: &CloudError) {
    assert!(!e.to_string().contains(TOKEN), "token leaked in Display: {e}");
    assert!(!format!("{e:?}").contains(TOKEN), "token leaked in Debug: {e:?}");
}

#[tokio::test]
async fn lists_server_types_with_prices() {
    let (_emu, client) = start(EmulatorConfig::default()).await;
    let types = client.server_types().await.expect("server types");
    let cpx22 = types.iter().find(|t| t.name == "cpx22").expect("cpx22 offered in nbg1");
    assert_eq!((cpx22.cores, cpx22.ram_mb, cpx22.location.as_str()), (2, 4096, "nbg1"));
    assert!(cpx22.hourly_eur > 0.0 && cpx22.monthly_eur > cpx22.hourly_eur);
    assert!(types.iter().any(|t| t.name == "ccx63" && t.cores == 48));
    assert!(!types.iter().any(|t| t.name == "cx22"), "deprecated types are not offered");
    let us = client.clone().with_location("ash").server_types().await.expect("ash types");
    assert!(!us.iter().any(|t| t.name.starts_with("cax")), "Arm is EU only");
    let us_cpx22 = us.iter().find(|t| t.name == "cpx22").expect("cpx22 in ash");
    assert!(us_cpx22.monthly_eur > cpx22.monthly_eur);
    assert!(!format!("{client:?}").contains(TOKEN));
}

#[tokio::test]
async fn creates_gets_and_deletes_a_server() {
    let (emu, client) = start(EmulatorConfig { boot_ms: 300, ..Default::default() }).await;
    let user_data = cloud_init(&CloudInit { ready_url: Some("http://127.0.0.1:9/ready".into()), ..Default::default() });
    let mut r = req("conductor-node-1");
    r.labels.insert("role".into(), "worker".into());
    r.user_data = Some(user_data.clone());
    let created = client.create_server(&r).await.expect("create");
    assert_eq!(created.server.status, ServerStatus::Initializing);
    assert!(created.root_password.is_some(), "no SSH key given");
    assert!(!format!("{created:?}").contains(created.root_password.as_deref().unwrap_or("x")));
    let ip = created.server.ipv4.expect("ipv4");
    assert!(ip.is_loopback());

    let rec = emu.server_by_name("conductor-node-1").expect("recorded");
    assert_eq!(
        (rec.server_type.as_str(), rec.location.as_str(), rec.image.as_str()),
        ("cpx22", "fsn1", "ubuntu-24.04")
    );
    assert_eq!(rec.labels.get("managed_by").map(String::as_str), Some("conductor"));
    assert_eq!(rec.labels.get("role").map(String::as_str), Some("worker"));
    assert_eq!(rec.user_data.as_deref(), Some(user_data.as_str()));
    assert_eq!(emu.mutating_calls(), 1);

    tokio::time::sleep(Duration::from_millis(350)).await;
    let got = client.get_server(created.server.id).await.expect("get").expect("exists");
    assert_eq!((got.status, got.ipv4), (ServerStatus::Running, Some(ip)));

    client.delete_server(created.server.id).await.expect("delete");
    assert_eq!(client.get_server(created.server.id).await.expect("get after delete"), None);
    client.delete_server(created.server.id).await.expect("deleting twice is fine");
    assert!(emu.servers().is_empty());
}

#[tokio::test]
async fn name_conflict_and_invalid_input() {
    let (_emu, client) = start(EmulatorConfig::default()).await;
    client.create_server(&req("dup")).await.expect("first");
    let e = client.create_server(&req("dup")).await.expect_err("second");
    assert!(matches!(e, CloudError::Conflict(_)), "{e:?}");
    assert_no_token(&e);
    let e = client.create_server(&req("bad_name")).await.expect_err("invalid name");
    assert!(matches!(&e, CloudError::Other(m) if m.contains("invalid_input")), "{e:?}");
    let mut r = req("arm-in-us");
    r.server_type = "cax11".into();
    r.location = Some("ash".into());
    let e = client.create_server(&r).await.expect_err("unsupported location");
    assert!(matches!(&e, CloudError::Other(m) if m.contains("invalid_input")), "{e:?}");
}

#[tokio::test]
async fn list_managed_follows_all_pages() {
    let (emu, base) = start_raw(EmulatorConfig::default()).await;
    let client = HetznerClient::new(&base, TOKEN.into());
    for i in 0..53 {
        client.create_server(&req(&format!("node-{i}"))).await.expect("create");
    }
    // A server conductor does not manage: created without the label, behind the client's back.
    let resp = reqwest::Client::new()
        .post(format!("{base}/servers"))
        .bearer_auth(TOKEN)
        .json(&serde_json::json!({"name": "unmanaged", "server_type": "cx23", "image": "debian-12"}))
        .send()
        .await
        .expect("raw create");
    assert_eq!(resp.status(), 201);
    let all = client.list_managed().await.expect("list");
    assert_eq!(all.len(), 53);
    let mut ids: Vec<i64> = all.iter().map(|s| s.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 53);
    assert!(all.windows(2).all(|w| w[0].id < w[1].id));
    let pages = emu.requests().iter().filter(|r| r.uri.starts_with("/v1/servers?")).count();
    assert_eq!(pages, 2, "53 servers at 50 per page");
    assert!(client.list_servers("managed_by=conductor,role=db").await.expect("selector").is_empty());
}

#[tokio::test]
async fn wrong_token_is_unauthorized() {
    let (emu, base) = start_raw(EmulatorConfig::default()).await;
    let bad = HetznerClient::new(&base, "wrong-token".into());
    let e = bad.server_types().await.expect_err("401");
    assert_eq!(e, CloudError::Unauthorized);
    let e = bad.create_server(&req("x")).await.expect_err("401");
    assert_eq!(e, CloudError::Unauthorized);
    assert_eq!(emu.mutating_calls(), 0);
    assert!(emu.servers().is_empty());
}

#[tokio::test]
async fn rate_limit_is_surfaced() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    emu.throttle_next(1);
    let e = client.create_server(&req("throttled")).await.expect_err("429");
    assert_eq!(e, CloudError::RateLimited { retry_after_s: Some(1) });
    assert_no_token(&e);
    assert!(emu.servers().is_empty());

    // A real bucket: 3 requests per hour, then 429 with a retry hint of 1200 s (one request's refill).
    let (emu, client) = start(EmulatorConfig { rate_limit: 3, ..Default::default() }).await;
    for _ in 0..3 {
        client.get_server(1).await.expect("within limit");
    }
    let e = client.get_server(1).await.expect_err("over limit");
    match e {
        CloudError::RateLimited { retry_after_s: Some(s) } => assert!((1190..=1200).contains(&s), "{s}"),
        other => panic!("expected RateLimited, got {other:?}"),
    }
    assert!(emu.requests().iter().filter(|r| r.status == 429).count() >= 1);
}

#[tokio::test]
async fn out_of_stock_and_transient_faults() {
    let (emu, client) = start(EmulatorConfig::default()).await;
    emu.out_of_stock_next("cpx22", 1);
    let e = client.create_server(&req("oos")).await.expect_err("412");
    assert!(matches!(e, CloudError::OutOfStock(_)), "{e:?}");
    assert_no_token(&e);
    client.create_server(&req("oos")).await.expect("in stock again");

    emu.sell_out("cpx22", Some("fsn1"));
    let e = client.create_server(&req("sold-out")).await.expect_err("sold out");
    assert!(matches!(e, CloudError::OutOfStock(_)), "{e:?}");
    let mut elsewhere = req("sold-out");
    elsewhere.location = Some("hel1".into());
    client.create_server(&elsewhere).await.expect("other location has stock");
    emu.restock("cpx22");

    emu.fail_next_requests(1, Fault::ServerError);
    let e = client.list_managed().await.expect_err("500");
    assert!(matches!(e, CloudError::Transient(_)) && e.is_retryable(), "{e:?}");
    assert_eq!(client.list_managed().await.expect("recovered").len(), 2);
}
