//! Every example conflist in conflist-examples/ must hold a gwsteer entry
//! that validates, built the way a runtime builds a plugin's config.

use std::fs;
use std::path::Path;

use serde_json::Value;

#[test]
fn every_example_conflist_validates() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("conflist-examples");
    let mut checked = 0;
    for entry in fs::read_dir(&dir).expect("conflist-examples/ exists") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "conflist") {
            continue;
        }
        let text = fs::read_to_string(&path).unwrap();
        let conflist: Value = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()));
        let plugins = conflist["plugins"].as_array().expect("plugins");
        let ours: Vec<&Value> = plugins.iter().filter(|p| p["type"] == "gwsteer").collect();
        assert_eq!(ours.len(), 1, "{}: one gwsteer entry", path.display());
        assert_ne!(
            plugins[0]["type"],
            "gwsteer",
            "{}: gwsteer is chained, never first",
            path.display()
        );
        let mut conf = ours[0].clone();
        conf["cniVersion"] = conflist["cniVersion"].clone();
        conf["name"] = conflist["name"].clone();
        if let Err(e) = gwsteer::config::Config::from_value(&conf) {
            panic!("{}: {e}", path.display());
        }
        checked += 1;
    }
    assert!(checked >= 2, "found only {checked} example conflists");
}
