//! Wire-level fidelity of the emulator: headers, error objects, pagination, selectors, actions.

use std::time::Duration;

use conductor_live::hetzner::{Emulator, EmulatorConfig};
use serde_json::{json, Value};

const TOKEN: &str = "tok";

async fn start(boot_ms: u64) -> (Emulator, String, reqwest::Client) {
    let emu = Emulator::new(EmulatorConfig { token: Some(TOKEN.into()), boot_ms, ..Default::default() });
    let addr = emu.spawn_local().await.expect("bind");
    (emu, format!("http://{addr}/v1"), reqwest::Client::new())
}

async fn get(http: &reqwest::Client, url: &str) -> (u16, reqwest::header::HeaderMap, Value) {
    let r = http.get(url).bearer_auth(TOKEN).send().await.expect("send");
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.json().await.unwrap_or(Value::Null))
}

async fn post(http: &reqwest::Client, url: &str, body: Value) -> (u16, Value) {
    let r = http.post(url).bearer_auth(TOKEN).json(&body).send().await.expect("send");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn errors_headers_and_auth() {
    let (_emu, base, http) = start(0).await;
    let r = http.get(format!("{base}/servers")).send().await.expect("send");
    assert_eq!(r.status(), 401);
    for h in ["ratelimit-limit", "ratelimit-remaining", "ratelimit-reset", "x-correlation-id"] {
        assert!(r.headers().contains_key(h), "missing {h}");
    }
    assert!(r.headers()["content-type"].to_str().unwrap_or("").starts_with("application/json"));
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
    assert!(body["error"].as_object().is_some_and(|e| e.contains_key("details")));

    let (status, _, body) = get(&http, &format!("{base}/server_types/cpx22")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let (status, _, body) = get(&http, &format!("{base}/nope")).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));
    let r = http.post(format!("{base}/servers")).bearer_auth(TOKEN).body("{not json").send().await.expect("send");
    assert_eq!(r.status(), 400);
    let (status, body) = post(&http, &format!("{base}/servers"), json!({"name": "a b", "image": "nope"})).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["code"], "invalid_input");
    let fields: Vec<&str> = body["error"]["details"]["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f["name"].as_str())
        .collect();
    assert_eq!(fields, ["name", "server_type", "image"]);
}

#[tokio::test]
async fn pagination_selectors_sort_and_ids() {
    let (emu, base, http) = start(0).await;
    for (i, role) in ["web", "db", "web", "cache", "web"].iter().enumerate() {
        let body = json!({"name": format!("n{i}"), "server_type": 109, "image": "161547269", "location": "2",
                          "labels": {"managed_by": "conductor", "role": role}});
        let (status, body) = post(&http, &format!("{base}/servers"), body).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["server"]["location"]["name"], "nbg1");
        assert_eq!(body["next_actions"][0]["command"], "start_server");
    }
    let (status, headers, body) = get(&http, &format!("{base}/servers?per_page=2&page=2&sort=name:desc")).await;
    assert_eq!(status, 200);
    assert_eq!(
        body["meta"]["pagination"],
        json!({"page": 2, "per_page": 2, "previous_page": 1, "next_page": 3, "last_page": 3, "total_entries": 5})
    );
    let names: Vec<&str> =
        body["servers"].as_array().into_iter().flatten().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["n2", "n1"]);
    let link = headers["link"].to_str().unwrap_or("");
    assert!(link.contains("rel=\"prev\"") && link.contains("rel=\"next\"") && link.contains("page=3"), "{link}");

    let count = |sel: &'static str| {
        let (http, base) = (http.clone(), base.clone());
        async move {
            let url =
                reqwest::Url::parse_with_params(&format!("{base}/servers"), &[("label_selector", sel)]).expect("url");
            let (_, _, body) = get(&http, url.as_str()).await;
            body["servers"].as_array().map(Vec::len).unwrap_or(usize::MAX)
        }
    };
    assert_eq!(count("role=web").await, 3);
    assert_eq!(count("managed_by=conductor,role!=web").await, 2);
    assert_eq!(count("role in (db,cache)").await, 2);
    assert_eq!(count("!role").await, 0);
    assert_eq!(count("role").await, 5);
    let (status, _, _) = get(&http, &format!("{base}/servers?label_selector=a%3D%3D%3D")).await;
    assert_eq!(status, 422);
    let (_, _, body) = get(&http, &format!("{base}/servers?name=n3")).await;
    assert_eq!(body["servers"].as_array().map(Vec::len), Some(1));
    assert_eq!(emu.servers().len(), 5);
}

#[tokio::test]
async fn statuses_and_actions_follow_the_clock() {
    // Generous timings: boot 2 s, so the machine being slow cannot flip a status early.
    let (_emu, base, http) = start(2000).await;
    let (status, body) =
        post(&http, &format!("{base}/servers"), json!({"name": "n", "server_type": "cx23", "image": "debian-12"}))
            .await;
    assert_eq!(status, 201);
    assert_eq!(body["server"]["status"], "initializing");
    assert_eq!(body["server"]["location"]["name"], "fsn1");
    let (id, action) = (body["server"]["id"].as_i64().unwrap_or(0), body["action"]["id"].as_i64().unwrap_or(0));
    let start = body["next_actions"][0]["id"].as_i64().unwrap_or(0);
    let (_, _, a) = get(&http, &format!("{base}/actions/{action}")).await;
    assert_eq!(a["action"]["status"], "running");
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let (_, _, s) = get(&http, &format!("{base}/servers/{id}")).await;
    assert_eq!(s["server"]["status"], "starting");
    let (_, _, list) = get(&http, &format!("{base}/actions?id={action}&id={start}&sort=status&sort=id&page=1")).await;
    let statuses: Vec<&str> =
        list["actions"].as_array().into_iter().flatten().filter_map(|a| a["status"].as_str()).collect();
    assert_eq!(statuses, ["running", "success"]);
    tokio::time::sleep(Duration::from_millis(900)).await;
    let (_, _, s) = get(&http, &format!("{base}/servers/{id}")).await;
    assert_eq!(s["server"]["status"], "running");
    let (_, _, a) = get(&http, &format!("{base}/servers/actions/{start}")).await;
    assert_eq!((a["action"]["status"].as_str(), a["action"]["progress"].as_i64()), (Some("success"), Some(100)));
    let r = http.delete(format!("{base}/servers/{id}")).bearer_auth(TOKEN).send().await.expect("delete");
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.expect("json");
    assert_eq!(body["action"]["command"], "delete_server");
    let (status, _, _) = get(&http, &format!("{base}/servers/{id}")).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn ssh_keys_and_root_password() {
    let (_emu, base, http) = start(0).await;
    let key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZ0FfcqQ0GqTRfv0rCq9u5ZFlVZ5g5cQXyXzl2l9k3j conductor";
    let (status, body) =
        post(&http, &format!("{base}/ssh_keys"), json!({"name": "conductor", "public_key": key})).await;
    assert_eq!(status, 201, "{body}");
    let fp = body["ssh_key"]["fingerprint"].as_str().unwrap_or("").to_string();
    assert_eq!(fp.split(':').count(), 16);
    let (_, _, list) = get(&http, &format!("{base}/ssh_keys?fingerprint={fp}")).await;
    assert_eq!(list["ssh_keys"][0]["name"], "conductor");
    let (status, _) = post(&http, &format!("{base}/ssh_keys"), json!({"name": "conductor", "public_key": key})).await;
    assert_eq!(status, 409);
    let body = json!({"name": "k", "server_type": "cpx11", "image": "debian-12", "ssh_keys": ["conductor"]});
    let (status, body) = post(&http, &format!("{base}/servers"), body).await;
    assert_eq!((status, body["root_password"].is_null()), (201, true));
    let body = json!({"name": "k2", "server_type": "cpx11", "image": "debian-12", "ssh_keys": ["missing"]});
    let (status, _) = post(&http, &format!("{base}/servers"), body).await;
    assert_eq!(status, 422);
}
