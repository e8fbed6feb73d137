//! The static catalogue of the emulator: locations, system images and the default server types.
//!
//! Prices are indicative EUR net values (see `shared/reference/hetzner-api.md` §10); real ones must always be read
//! from `GET /server_types` at run time.

use serde_json::{json, Value};

/// Included traffic in EU locations: 20 TB.
const TRAFFIC_EU: u64 = 21_990_232_555_520;
/// Included traffic in US and Singapore locations: 1 TB.
const TRAFFIC_OTHER: u64 = 1_099_511_627_776;

/// One location (`GET /locations`).
#[derive(Clone, Debug, PartialEq)]
pub struct LocationSpec {
    pub id: i64,
    pub name: &'static str,
    pub description: &'static str,
    pub country: &'static str,
    pub city: &'static str,
    pub latitude: f64,
    pub longitude: f64,
    pub network_zone: &'static str,
}

impl LocationSpec {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "name": self.name, "description": self.description, "country": self.country,
            "city": self.city, "latitude": self.latitude, "longitude": self.longitude,
            "network_zone": self.network_zone,
        })
    }

    fn is_eu(&self) -> bool {
        self.network_zone == "eu-central"
    }
}

/// The current Hetzner locations.
pub fn locations() -> Vec<LocationSpec> {
    let l = |id, name, description, country, city, latitude, longitude, network_zone| LocationSpec {
        id,
        name,
        description,
        country,
        city,
        latitude,
        longitude,
        network_zone,
    };
    vec![
        l(1, "fsn1", "Falkenstein DC Park 1", "DE", "Falkenstein", 50.47612, 12.370071, "eu-central"),
        l(2, "nbg1", "Nuremberg DC Park 1", "DE", "Nuremberg", 49.452102, 11.076665, "eu-central"),
        l(3, "hel1", "Helsinki DC Park 1", "FI", "Helsinki", 60.169855, 24.938379, "eu-central"),
        l(4, "ash", "Ashburn, VA", "US", "Ashburn, VA", 39.045821, -77.487073, "us-east"),
        l(5, "hil", "Hillsboro, OR", "US", "Hillsboro, OR", 45.54222, -122.951924, "us-west"),
        l(6, "sin", "Singapore", "SG", "Singapore", 1.283333, 103.833333, "ap-southeast"),
    ]
}

/// One system image (`GET /images`).
#[derive(Clone, Debug, PartialEq)]
pub struct ImageSpec {
    pub id: i64,
    pub name: &'static str,
    pub description: &'static str,
    pub os_flavor: &'static str,
    pub os_version: &'static str,
    pub architecture: &'static str,
    pub created: &'static str,
}

impl ImageSpec {
    pub fn to_json(&self) -> Value {
        json!({
            "id": self.id, "type": "system", "status": "available", "name": self.name,
            "description": self.description, "image_size": null, "disk_size": 5, "created": self.created,
            "created_from": null, "bound_to": null, "os_flavor": self.os_flavor, "os_version": self.os_version,
            "rapid_deploy": true, "protection": {"delete": false}, "deprecated": null, "deleted": null,
            "labels": {}, "architecture": self.architecture,
        })
    }
}

/// A few system images; each name exists once per architecture, like on the real API.
pub fn images() -> Vec<ImageSpec> {
    let i = |id, name, description, os_flavor, os_version, architecture, created| ImageSpec {
        id,
        name,
        description,
        os_flavor,
        os_version,
        architecture,
        created,
    };
    vec![
        i(114690387, "debian-12", "Debian 12", "debian", "12", "x86", "2023-06-13T06:00:02+00:00"),
        i(114690389, "debian-12", "Debian 12", "debian", "12", "arm", "2023-06-13T06:00:03+00:00"),
        i(310557660, "debian-13", "Debian 13", "debian", "13", "x86", "2025-08-12T06:00:02+00:00"),
        i(310557661, "debian-13", "Debian 13", "debian", "13", "arm", "2025-08-12T06:00:03+00:00"),
        i(67794396, "ubuntu-22.04", "Ubuntu 22.04", "ubuntu", "22.04", "x86", "2022-04-21T13:32:38+00:00"),
        i(103908070, "ubuntu-22.04", "Ubuntu 22.04", "ubuntu", "22.04", "arm", "2022-04-21T13:32:39+00:00"),
        i(161547269, "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04", "x86", "2024-04-25T13:26:27+00:00"),
        i(161547270, "ubuntu-24.04", "Ubuntu 24.04", "ubuntu", "24.04", "arm", "2024-04-25T13:26:28+00:00"),
    ]
}

/// The price of a server type in one location, net EUR. Gross prices are derived with the emulator's VAT rate.
#[derive(Clone, Debug, PartialEq)]
pub struct LocationPrice {
    pub location: String,
    pub hourly_net: f64,
    pub monthly_net: f64,
    pub included_traffic: u64,
    pub per_tb_traffic_net: f64,
}

/// One server type (`GET /server_types`). It is sold in exactly the locations it has a price for.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerTypeSpec {
    pub id: i64,
    pub name: String,
    pub description: String,
    pub category: String,
    pub cores: u32,
    /// GB, like the API.
    pub memory_gb: f64,
    /// GB.
    pub disk_gb: u64,
    /// `shared` or `dedicated`.
    pub cpu_type: String,
    /// `x86` or `arm`.
    pub architecture: String,
    /// Deprecated types are listed (with a `deprecation` object) but can no longer be ordered.
    pub deprecated: bool,
    pub prices: Vec<LocationPrice>,
}

impl ServerTypeSpec {
    /// A type sold in `locs` for `monthly_eu` EUR net a month in EU locations (US +20 %, Singapore +30 %).
    pub fn new(id: i64, name: &str, category: &str, cores: u32, memory_gb: f64, disk_gb: u64, monthly_eu: f64) -> Self {
        let cpu_type = if name.starts_with("ccx") { "dedicated" } else { "shared" };
        let architecture = if name.starts_with("cax") { "arm" } else { "x86" };
        let eu_only = name.starts_with("cax") || name.starts_with("cx");
        let prices = locations()
            .into_iter()
            .filter(|l| l.is_eu() || !eu_only)
            .map(|l| {
                let factor = match l.network_zone {
                    "eu-central" => 1.0,
                    "ap-southeast" => 1.3,
                    _ => 1.2,
                };
                let monthly = round_to(monthly_eu * factor, 2);
                LocationPrice {
                    location: l.name.to_string(),
                    hourly_net: round_to(monthly / 624.0, 4),
                    monthly_net: monthly,
                    included_traffic: if l.is_eu() { TRAFFIC_EU } else { TRAFFIC_OTHER },
                    per_tb_traffic_net: if l.is_eu() { 1.0 } else { 7.2 },
                }
            })
            .collect();
        ServerTypeSpec {
            id,
            name: name.to_string(),
            description: name.to_uppercase(),
            category: category.to_string(),
            cores,
            memory_gb,
            disk_gb,
            cpu_type: cpu_type.to_string(),
            architecture: architecture.to_string(),
            deprecated: false,
            prices,
        }
    }

    pub fn price_in(&self, location: &str) -> Option<&LocationPrice> {
        self.prices.iter().find(|p| p.location == location)
    }

    /// The API object; `available(location)` tells whether the type is in stock there.
    pub fn to_json(&self, vat_rate: f64, available: &dyn Fn(&str) -> bool) -> Value {
        let all_locations = locations();
        let deprecation = if self.deprecated {
            json!({"announced": "2025-10-01T00:00:00+00:00", "unavailable_after": "2026-01-01T00:00:00+00:00"})
        } else {
            Value::Null
        };
        let locs: Vec<Value> = self
            .prices
            .iter()
            .filter_map(|p| all_locations.iter().find(|l| l.name == p.location))
            .map(|l| {
                json!({"id": l.id, "name": l.name, "deprecation": deprecation.clone(),
                       "available": available(l.name) && !self.deprecated, "recommended": l.name == "nbg1"})
            })
            .collect();
        let prices: Vec<Value> = self
            .prices
            .iter()
            .map(|p| {
                json!({
                    "location": p.location,
                    "price_hourly": price_json(p.hourly_net, vat_rate),
                    "price_monthly": price_json(p.monthly_net, vat_rate),
                    "included_traffic": p.included_traffic,
                    "price_per_tb_traffic": price_json(p.per_tb_traffic_net, vat_rate),
                })
            })
            .collect();
        json!({
            "id": self.id, "name": self.name, "description": self.description, "category": self.category,
            "cores": self.cores, "memory": self.memory_gb, "disk": self.disk_gb, "cpu_type": self.cpu_type,
            "architecture": self.architecture, "storage_type": "local", "deprecated": self.deprecated,
            "deprecation": deprecation, "locations": locs, "prices": prices,
        })
    }
}

/// `{"net": "...", "gross": "..."}` with 10 decimals, like the real API.
pub fn price_json(net: f64, vat_rate: f64) -> Value {
    json!({"net": format!("{net:.10}"), "gross": format!("{:.10}", round_to(net * (1.0 + vat_rate), 10))})
}

fn round_to(x: f64, decimals: i32) -> f64 {
    let f = 10f64.powi(decimals);
    (x * f).round() / f
}

/// The default catalogue: shared Intel (cx), shared AMD (cpx, both generations), Arm (cax, EU only) and dedicated
/// AMD (ccx). One deprecated type (cx22) is listed, as on the real API.
pub fn default_server_types() -> Vec<ServerTypeSpec> {
    const COST: &str = "Cost-Optimized";
    const REGULAR: &str = "Regular Purpose";
    const GENERAL: &str = "General Purpose";
    let mut cx22 = ServerTypeSpec::new(104, "cx22", COST, 2, 4.0, 40, 3.79);
    cx22.deprecated = true;
    vec![
        cx22,
        ServerTypeSpec::new(114, "cx23", COST, 2, 4.0, 40, 3.99),
        ServerTypeSpec::new(115, "cx33", COST, 4, 8.0, 80, 6.49),
        ServerTypeSpec::new(116, "cx43", COST, 8, 16.0, 160, 11.99),
        ServerTypeSpec::new(117, "cx53", COST, 16, 32.0, 320, 22.49),
        ServerTypeSpec::new(22, "cpx11", REGULAR, 2, 2.0, 40, 4.99),
        ServerTypeSpec::new(23, "cpx21", REGULAR, 3, 4.0, 80, 8.99),
        ServerTypeSpec::new(24, "cpx31", REGULAR, 4, 8.0, 160, 16.49),
        ServerTypeSpec::new(25, "cpx41", REGULAR, 8, 16.0, 240, 30.49),
        ServerTypeSpec::new(26, "cpx51", REGULAR, 16, 32.0, 360, 60.49),
        ServerTypeSpec::new(108, "cpx12", REGULAR, 1, 2.0, 40, 4.49),
        ServerTypeSpec::new(109, "cpx22", REGULAR, 2, 4.0, 80, 7.99),
        ServerTypeSpec::new(110, "cpx32", REGULAR, 4, 8.0, 160, 13.99),
        ServerTypeSpec::new(111, "cpx42", REGULAR, 8, 16.0, 320, 25.49),
        ServerTypeSpec::new(112, "cpx52", REGULAR, 12, 24.0, 480, 36.49),
        ServerTypeSpec::new(113, "cpx62", REGULAR, 16, 32.0, 640, 51.49),
        ServerTypeSpec::new(45, "cax11", COST, 2, 4.0, 40, 3.99),
        ServerTypeSpec::new(93, "cax21", COST, 4, 8.0, 80, 6.99),
        ServerTypeSpec::new(94, "cax31", COST, 8, 16.0, 160, 12.99),
        ServerTypeSpec::new(95, "cax41", COST, 16, 32.0, 320, 25.49),
        ServerTypeSpec::new(96, "ccx13", GENERAL, 2, 8.0, 80, 14.49),
        ServerTypeSpec::new(97, "ccx23", GENERAL, 4, 16.0, 160, 28.49),
        ServerTypeSpec::new(98, "ccx33", GENERAL, 8, 32.0, 240, 56.49),
        ServerTypeSpec::new(99, "ccx43", GENERAL, 16, 64.0, 360, 112.49),
        ServerTypeSpec::new(100, "ccx53", GENERAL, 32, 128.0, 600, 224.49),
        ServerTypeSpec::new(101, "ccx63", GENERAL, 48, 192.0, 960, 336.49),
    ]
}
