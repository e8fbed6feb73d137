#!/usr/bin/env python3
"""Fidelity check: Hetzner's official Python client (`pip install hcloud`) against the emulator.

Usage: python3 tests/hcloud_python.py --endpoint http://127.0.0.1:PORT/v1 --token T
(start the emulator with `cargo run --example emulator -- --listen 127.0.0.1:PORT --token T --boot-ms 500`).
Exits 0 and prints "hcloud-python: all checks passed" on success; any failed check raises.
"""

import argparse
import sys

from hcloud import APIException, Client
from hcloud.images import Image
from hcloud.locations import Location
from hcloud.server_types import ServerType

PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGZ0FfcqQ0GqTRfv0rCq9u5ZFlVZ5g5cQXyXzl2l9k3j py"


def expect_api_error(code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except APIException as e:
        assert e.code == code, f"expected {code}, got {e.code}: {e.message}"
        return e
    raise AssertionError(f"expected APIException {code}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--token", required=True)
    args = parser.parse_args()
    client = Client(token=args.token, api_endpoint=args.endpoint, poll_interval=0.1, application_name="conductor-test")

    # Server types: more than one page at the default page size; get_all follows next_page.
    types = client.server_types.get_all()
    names = {t.name for t in types}
    assert {"cpx22", "ccx13", "cax11", "cx23"} <= names, names
    cpx22 = client.server_types.get_by_name("cpx22")
    assert cpx22.cores == 2 and cpx22.memory == 4.0 and cpx22.architecture == "x86", cpx22
    nbg1 = [p for p in cpx22.prices if p["location"] == "nbg1"][0]
    assert float(nbg1["price_monthly"]["net"]) > float(nbg1["price_hourly"]["net"]) > 0
    assert len(nbg1["price_hourly"]["net"].split(".")[1]) == 10
    assert client.server_types.get_by_id(cpx22.id).name == "cpx22"

    # Locations and images.
    assert {loc.name for loc in client.locations.get_all()} == {"fsn1", "nbg1", "hel1", "ash", "hil", "sin"}
    assert client.locations.get_by_name("nbg1").network_zone == "eu-central"
    image = client.images.get_by_name_and_architecture("ubuntu-24.04", "x86")
    assert image is not None and image.os_flavor == "ubuntu", image

    # SSH keys.
    key = client.ssh_keys.create(name="py-key", public_key=PUBLIC_KEY)
    assert client.ssh_keys.get_by_name("py-key").fingerprint == key.fingerprint

    # Create by names; wait for the create and start actions.
    resp = client.servers.create(
        name="py-node-1",
        server_type=ServerType(name="cpx22"),
        image=Image(name="ubuntu-24.04"),
        location=Location(name="nbg1"),
        ssh_keys=[key],
        labels={"managed_by": "conductor", "role": "py"},
        user_data="#cloud-config\npackages: [docker.io]\n",
    )
    assert resp.server.status == "initializing", resp.server.status
    assert resp.root_password is None
    assert resp.action.command == "create_server"
    resp.action.wait_until_finished()
    for action in resp.next_actions:
        action.wait_until_finished()
    server = client.servers.get_by_id(resp.server.id)
    assert server.status == "running", server.status
    assert server.public_net.ipv4.ip.startswith("127."), server.public_net.ipv4.ip
    assert server.server_type.name == "cpx22" and server.location.name == "nbg1"
    assert server.image.name == "ubuntu-24.04" and server.labels["role"] == "py"

    # Name uniqueness, invalid input, out-of-range location.
    expect_api_error("uniqueness_error", client.servers.create, name="py-node-1",
                     server_type=ServerType(name="cpx22"), image=Image(name="ubuntu-24.04"))
    err = expect_api_error("invalid_input", client.servers.create, name="bad_name",
                           server_type=ServerType(name="cpx22"), image=Image(name="ubuntu-24.04"))
    assert err.details["fields"][0]["name"] == "name", err.details
    expect_api_error("invalid_input", client.servers.create, name="arm-us",
                     server_type=ServerType(name="cax11"), image=Image(name="debian-12"), location=Location(name="ash"))

    # Listing: label selectors, name filter, pagination metadata.
    for i in range(2, 5):
        client.servers.create(name=f"py-node-{i}", server_type=ServerType(name="cx23"), image=Image(name="debian-12"),
                              labels={"managed_by": "conductor", "role": "batch"})
    assert len(client.servers.get_all(label_selector="managed_by=conductor")) == 4
    assert [s.name for s in client.servers.get_all(label_selector="role=py")] == ["py-node-1"]
    assert len(client.servers.get_all(label_selector="managed_by=conductor,role!=py")) == 3
    assert len(client.servers.get_all(label_selector="!managed_by")) == 0
    assert client.servers.get_by_name("py-node-3").server_type.name == "cx23"
    page = client.servers.get_list(page=1, per_page=3)
    p = page.meta.pagination
    assert (p.page, p.per_page, p.previous_page, p.next_page, p.last_page, p.total_entries) == (1, 3, None, 2, 2, 4), p

    # Delete: action, then 404.
    for s in client.servers.get_all():
        action = s.delete()
        assert action.command == "delete_server"
        action.wait_until_finished()
    expect_api_error("not_found", client.servers.get_by_id, server.id)
    assert client.servers.get_all() == []

    # Wrong token.
    bad = Client(token="wrong-token", api_endpoint=args.endpoint)
    expect_api_error("unauthorized", bad.server_types.get_all)

    print("hcloud-python: all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
