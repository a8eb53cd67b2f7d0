//! Hardware profiles: one TOML file per tier (`hardware-profiles/`) saying
//! what the box is, how dce-edge runs on it and what it must hold; reading
//! a host to name its profile (`detect`); and auditing the host's tuning
//! against a profile (`tune`).
//!
//! The built-in profiles are embedded in the binary, so an installed
//! `dce-edge` knows them without the source tree; `--profiles-dir` adds
//! others (a file there replaces the built-in profile of the same name).

mod cpus;
mod schema;

pub mod detect;
pub mod drivers;
pub mod ethtool;
pub mod host;
pub mod tune;

use std::path::{Path, PathBuf};

pub use cpus::CpuSet;
pub use schema::{
    parse, AfXdpMode, Band, CapacityModel, CpsRange, DefaultRateLimits, Hardware, HostTuning,
    Measurement, Profile, RuntimeDefaults, TargetBasis, TokenBucket, XdpMode, GUIDE_CPS,
    GUIDE_SETUP_LATENCY_MS, TIER_SPLIT,
};

use config::{ConfigError, SourceFile};

/// The folder the built-in profiles come from, as their errors name it.
pub const BUILTIN_DIR: &str = "hardware-profiles";

/// The built-in profiles: file name and text, embedded at build time.
pub const BUILTIN: &[(&str, &str)] = &[
    (
        "lab.toml",
        include_str!("../../../hardware-profiles/lab.toml"),
    ),
    (
        "cloud-vm.toml",
        include_str!("../../../hardware-profiles/cloud-vm.toml"),
    ),
    (
        "small-edge.toml",
        include_str!("../../../hardware-profiles/small-edge.toml"),
    ),
    (
        "medium-edge.toml",
        include_str!("../../../hardware-profiles/medium-edge.toml"),
    ),
    (
        "large-edge.toml",
        include_str!("../../../hardware-profiles/large-edge.toml"),
    ),
];

/// The built-in profiles, smallest tier first.
pub fn list() -> Result<Vec<Profile>, ConfigError> {
    BUILTIN
        .iter()
        .map(|(file, text)| {
            parse(&SourceFile::from_text(
                Path::new(BUILTIN_DIR).join(file),
                *text,
            ))
        })
        .collect()
}

/// Loads a profile by name (a built-in one) or by path (anything with a `/`
/// or ending in `.toml`). This is what the load generator's
/// `capacity --profile NAME` calls: `profile::load(name)?.band()`.
pub fn load(name: &str) -> Result<Profile, ConfigError> {
    if name.contains('/') || name.ends_with(".toml") {
        return load_file(name);
    }
    Catalog::builtin()?.get(name).cloned()
}

/// Reads and validates one profile file.
pub fn load_file(path: impl AsRef<Path>) -> Result<Profile, ConfigError> {
    parse(&SourceFile::read(path)?)
}

/// The profiles a command can choose from: the built-in ones, plus those of
/// a `--profiles-dir`.
#[derive(Debug, Clone)]
pub struct Catalog {
    profiles: Vec<Profile>,
}

impl Catalog {
    /// The built-in profiles.
    pub fn builtin() -> Result<Catalog, ConfigError> {
        Ok(Catalog { profiles: list()? })
    }

    /// The built-in profiles plus every `*.toml` in `dir` (a file there
    /// replaces the built-in profile of the same name). Any invalid file
    /// refuses the whole catalog, with its file, line and reason.
    pub fn with_dir(dir: &Path) -> Result<Catalog, ConfigError> {
        let mut catalog = Catalog::builtin()?;
        let entries = std::fs::read_dir(dir)
            .map_err(|e| ConfigError::file(dir, format!("cannot read profiles folder: {e}")))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        for file in files {
            let profile = load_file(&file)?;
            match catalog
                .profiles
                .iter_mut()
                .find(|p| p.name() == profile.name())
            {
                Some(slot) => *slot = profile,
                None => catalog.profiles.push(profile),
            }
        }
        Ok(catalog)
    }

    /// [`Catalog::with_dir`] when a folder is given, else the built-in ones.
    pub fn open(dir: Option<&Path>) -> Result<Catalog, ConfigError> {
        match dir {
            Some(dir) => Catalog::with_dir(dir),
            None => Catalog::builtin(),
        }
    }

    /// Every profile, built-in tiers first.
    pub fn profiles(&self) -> &[Profile] {
        &self.profiles
    }

    /// The profile called `name`; an unknown name is refused with the names
    /// there are.
    pub fn get(&self, name: &str) -> Result<&Profile, ConfigError> {
        self.profiles
            .iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                let names: Vec<&str> = self.profiles.iter().map(Profile::name).collect();
                ConfigError::file(
                    Path::new(BUILTIN_DIR).join(format!("{name}.toml")),
                    format!("no profile named {name:?}; there are: {}", names.join(", ")),
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lab_text() -> &'static str {
        BUILTIN.iter().find(|(f, _)| *f == "lab.toml").unwrap().1
    }

    /// The lab profile with one `key = value` line replaced.
    fn lab_with(key_line: &str, replacement: &str) -> SourceFile {
        let text = lab_text();
        assert!(text.contains(key_line), "lab.toml has no line {key_line:?}");
        SourceFile::from_text("lab.toml", text.replacen(key_line, replacement, 1))
    }

    fn refusal(src: &SourceFile) -> ConfigError {
        parse(src).expect_err("profile should be refused")
    }

    fn line_of(src: &SourceFile, needle: &str) -> usize {
        src.text()
            .lines()
            .position(|l| l.starts_with(needle))
            .unwrap()
            + 1
    }

    #[test]
    fn every_builtin_profile_is_valid() {
        let profiles = list().unwrap();
        let names: Vec<&str> = profiles.iter().map(Profile::name).collect();
        assert_eq!(
            names,
            ["lab", "cloud-vm", "small-edge", "medium-edge", "large-edge"]
        );
    }

    #[test]
    fn builtin_files_match_the_source_tree() {
        // The embedded copies are the files in hardware-profiles/, so a
        // profile shipped in the binary is the one reviewed in the tree.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../hardware-profiles");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = BUILTIN.iter().map(|(f, _)| f.to_string()).collect();
        embedded.sort();
        assert_eq!(on_disk, embedded, "embed every profile in BUILTIN");
    }

    #[test]
    fn lab_band_is_three_times_kamailio_and_confirmed_by_measurement() {
        let lab = load("lab").unwrap();
        let band = lab.band();
        assert_eq!(band.target_cps, 15_000);
        assert_eq!(band.target_cps, 3 * band.guide_cps.max);
        assert_eq!(band.target_basis, TargetBasis::Measured);
        assert!(band.is_confirmed());
        let m = band.measurement.as_ref().unwrap();
        assert_eq!(
            (m.cps, m.on.as_str(), m.flood_pps),
            (21_624, "2026-12-07", 0)
        );
        assert!(band.measured_cps >= Some(band.target_cps));
        assert_eq!(
            band.setup_latency_slo(),
            std::time::Duration::from_millis(50)
        );
    }

    #[test]
    fn lab_runs_one_copy_mode_worker() {
        let lab = load("lab").unwrap();
        assert_eq!(lab.hardware().af_xdp, AfXdpMode::Copy);
        let rt = lab.runtime();
        assert_eq!((rt.queues, rt.workers), (1, 1));
        assert_eq!(rt.worker_cores, vec![1]);
        // A worker sharing its core must ride out tens of milliseconds
        // without it (hardware-profiles/lab.toml).
        assert!(rt.rx_ring >= 4096);
        assert!(rt.umem_frames >= rt.fill_ring + rt.tx_ring);
    }

    #[test]
    fn every_band_states_the_guide_figure_and_that_the_split_is_ours() {
        for p in list().unwrap() {
            let b = p.band();
            assert_eq!(b.guide_range_cps, GUIDE_CPS, "{}", p.name());
            assert_eq!(b.tier_split, TIER_SPLIT, "{}", p.name());
            let line = b.basis_line();
            assert!(line.contains("5000-30000"), "{line}");
            assert!(line.contains("dce-edge's own split"), "{line}");
        }
    }

    #[test]
    fn every_extrapolated_target_is_within_its_model() {
        let mut extrapolated = 0;
        for p in list().unwrap() {
            let b = p.band();
            if let Some(m) = &b.model {
                extrapolated += 1;
                assert_eq!(b.target_basis, TargetBasis::Extrapolated);
                assert_eq!(m.workers, p.runtime().workers, "{}", p.name());
                assert!(b.target_cps <= m.supported_cps, "{}", p.name());
                assert!(b.basis_line().contains("extrapolated"));
            }
        }
        assert_eq!(extrapolated, 4);
        // 1,000,000 / 39.8 us per call per worker once a second worker
        // runs: the large edge's 14 workers carry 351,758 CPS, over its
        // 210K target.
        let large = load("large-edge").unwrap();
        assert_eq!(large.band().model.as_ref().unwrap().supported_cps, 351_758);
        assert_eq!(large.band().target_cps, 210_000);
    }

    #[test]
    fn the_model_applies_the_two_worker_efficiency_only_past_one_worker() {
        assert_eq!(CapacityModel::compute(50.0, 100.0, 1), 20_000);
        assert_eq!(CapacityModel::compute(50.0, 100.0, 2), 20_000);
        assert_eq!(CapacityModel::compute(50.0, 100.0, 4), 40_000);
    }

    #[test]
    fn a_band_without_a_basis_is_refused_at_the_band() {
        let src = lab_with("target_basis = \"measured\"\n", "");
        let err = refusal(&src);
        assert!(err.reason.contains("no target_basis"), "{err}");
        assert!(err.line > 0, "{err}");
        assert_eq!(err.file, std::path::PathBuf::from("lab.toml"));
    }

    #[test]
    fn the_old_guide_basis_is_refused_at_its_line() {
        let src = lab_with("target_basis = \"measured\"", "target_basis = \"guide\"");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "target_basis"));
        assert!(err.reason.contains("extrapolated"), "{err}");
    }

    #[test]
    fn a_measured_basis_without_its_date_is_refused() {
        let src = lab_with("measured_on = \"2026-12-07\"\n", "");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "target_basis"));
        assert!(err.reason.contains("without measured_on"), "{err}");
    }

    #[test]
    fn a_measured_basis_without_its_command_or_flood_is_refused() {
        let cmd = lab_text()
            .lines()
            .find(|l| l.starts_with("command = "))
            .unwrap()
            .to_string();
        let err = refusal(&lab_with(&format!("{cmd}\n"), ""));
        assert!(err.reason.contains("without command"), "{err}");
        let err = refusal(&lab_with("measured_flood_pps = 0\n", ""));
        assert!(err.reason.contains("without measured_flood_pps"), "{err}");
        let err = refusal(&lab_with("measured_cps = 21624\n", ""));
        assert!(err.reason.contains("without measured_cps"), "{err}");
    }

    #[test]
    fn a_measured_date_that_is_not_a_date_is_refused_at_its_line() {
        let src = lab_with(
            "measured_on = \"2026-12-07\"",
            "measured_on = \"last week\"",
        );
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "measured_on"));
        assert!(err.reason.contains("YYYY-MM-DD"), "{err}");
    }

    #[test]
    fn a_measured_target_above_what_held_is_refused() {
        let src = lab_with("target_cps = 15000", "target_cps = 22000");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "target_cps"));
        assert!(err.reason.contains("above the measured 21624"), "{err}");
    }

    fn large_text() -> &'static str {
        BUILTIN
            .iter()
            .find(|(f, _)| *f == "large-edge.toml")
            .unwrap()
            .1
    }

    #[test]
    fn an_extrapolated_target_above_its_model_is_refused_at_its_line() {
        let text = large_text().replacen("target_cps = 210000", "target_cps = 400000", 1);
        let src = SourceFile::from_text("large-edge.toml", text);
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "target_cps"));
        assert!(
            err.reason.contains("above what its model supports")
                && err.reason.contains("= 351758 CPS"),
            "{err}"
        );
    }

    #[test]
    fn an_extrapolated_basis_without_its_model_is_refused() {
        let model = large_text()
            .lines()
            .find(|l| l.starts_with("model = "))
            .unwrap()
            .to_string();
        let text = large_text().replacen(&format!("{model}\n"), "", 1);
        let src = SourceFile::from_text("large-edge.toml", text);
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "target_basis"));
        assert!(err.reason.contains("without model"), "{err}");
    }

    #[test]
    fn an_extrapolated_basis_with_measurement_fields_is_refused() {
        let text = large_text().replacen(
            "model_us_per_call = 32.1",
            "model_us_per_call = 32.1\nmeasured_cps = 90000",
            1,
        );
        let err = refusal(&SourceFile::from_text("large-edge.toml", text));
        assert!(err.reason.contains("measured_cps is given"), "{err}");
    }

    #[test]
    fn a_guide_figure_other_than_the_guide_is_refused() {
        let src = lab_with("guide_cps = [5000, 30000]", "guide_cps = [5000, 100000]");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "guide_cps = "));
        assert!(err.reason.contains("architecture guide"), "{err}");
    }

    #[test]
    fn a_split_not_said_to_be_ours_is_refused() {
        let src = lab_with("tier_split = \"dce-edge\"", "tier_split = \"guide\"");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "tier_split"));
        assert!(err.reason.contains("this project's own"), "{err}");
    }

    #[test]
    fn unknown_name_lists_the_known_ones() {
        let err = load("huge-edge").unwrap_err();
        assert!(err.reason.contains("lab, cloud-vm"), "{err}");
    }

    #[test]
    fn unknown_key_is_refused_at_its_line() {
        let src = lab_with("batch_size = 64", "batch_size = 64\nbatch_sise = 32");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "batch_sise"));
        assert!(err.reason.contains("batch_sise"), "{err}");
    }

    #[test]
    fn worker_priority_is_optional_and_refused_above_99_at_its_line() {
        assert_eq!(load("lab").unwrap().runtime().worker_priority, 0);
        let src = lab_with("batch_size = 64", "batch_size = 64\nworker_priority = 10");
        assert_eq!(parse(&src).unwrap().runtime().worker_priority, 10);
        let src = lab_with("batch_size = 64", "batch_size = 64\nworker_priority = 100");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "worker_priority"));
        assert!(err.reason.contains("worker_priority = 100"), "{err}");
    }

    #[test]
    fn workers_must_equal_queues() {
        let src = lab_with("workers = 1", "workers = 2");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "workers = 2"));
        assert!(err.reason.contains("one worker per queue"), "{err}");
    }

    #[test]
    fn worker_core_beyond_the_box_is_refused() {
        let src = lab_with("worker_cores = [1]", "worker_cores = [2]");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "worker_cores"));
        assert!(err.reason.contains("out of range"), "{err}");
    }

    #[test]
    fn worker_on_the_control_core_is_refused() {
        let src = lab_with("worker_cores = [1]", "worker_cores = [0]");
        assert!(refusal(&src).reason.contains("control_core"));
    }

    #[test]
    fn ring_must_be_a_power_of_two() {
        let src = lab_with("rx_ring = 4096", "rx_ring = 4000");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "rx_ring"));
        assert!(err.reason.contains("power of two"), "{err}");
    }

    #[test]
    fn umem_must_cover_fill_and_tx_rings() {
        let src = lab_with("umem_frames = 12288", "umem_frames = 8192");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "umem_frames"));
        assert!(err.reason.contains("at least 10240"), "{err}");
    }

    #[test]
    fn zero_copy_on_a_copy_only_driver_is_refused() {
        let src = lab_with("af_xdp = \"copy\"", "af_xdp = \"zero-copy\"");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "nic_drivers"));
        assert!(err.reason.contains("no AF_XDP zero-copy"), "{err}");
    }

    #[test]
    fn unknown_driver_is_refused() {
        let src = lab_with("nic_drivers = [\"veth\"]", "nic_drivers = [\"e1000\"]");
        assert!(refusal(&src).reason.contains("not in the driver table"));
    }

    #[test]
    fn target_below_the_guide_is_refused() {
        let src = lab_with("target_cps = 15000", "target_cps = 4000");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "target_cps"));
        assert!(err.reason.contains("must beat"), "{err}");
    }

    #[test]
    fn guide_band_outside_the_guide_is_refused() {
        let src = lab_with("guide_cps_max = 5000", "guide_cps_max = 50000");
        assert!(refusal(&src).reason.contains("5000 to 30000"));
    }

    #[test]
    fn latency_slo_looser_than_the_guide_is_refused() {
        let src = lab_with("setup_latency_p99_ms = 50", "setup_latency_p99_ms = 80");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "setup_latency_p99_ms"));
    }

    #[test]
    fn name_must_match_the_file() {
        let src = SourceFile::from_text("other.toml", lab_text());
        assert!(refusal(&src).reason.contains("differs from the file name"));
    }

    #[test]
    fn measured_value_makes_the_band_confirmed() {
        let src = lab_with("measured_cps = 21624", "measured_cps = 16200");
        let band = parse(&src).unwrap().band().clone();
        assert_eq!(band.measured_cps, Some(16_200));
        assert!(band.is_confirmed());
        assert!(band
            .basis_line()
            .contains("measured: 16200 CPS held on 2026-12-07"));
    }

    #[test]
    fn a_measured_value_of_zero_is_refused() {
        let src = lab_with("measured_cps = 21624", "measured_cps = 0");
        let err = refusal(&src);
        assert_eq!(err.line, line_of(&src, "measured_cps"));
    }

    #[test]
    fn extrapolated_bands_are_not_confirmed() {
        assert!(!load("medium-edge").unwrap().band().is_confirmed());
    }

    #[test]
    fn profiles_dir_adds_and_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let text = lab_text().replace("target_cps = 15000", "target_cps = 15100");
        std::fs::write(dir.join("lab.toml"), &text).unwrap();
        std::fs::write(
            dir.join("lab-two.toml"),
            text.replace("name = \"lab\"", "name = \"lab-two\""),
        )
        .unwrap();
        let catalog = Catalog::with_dir(&dir);
        let catalog = catalog.unwrap();
        assert_eq!(catalog.get("lab").unwrap().band().target_cps, 15_100);
        assert!(catalog.get("lab-two").is_ok());
        assert_eq!(catalog.profiles().len(), BUILTIN.len() + 1);
    }

    #[test]
    fn bad_file_in_profiles_dir_names_file_and_line() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let text = lab_text().replace("rx_ring = 4096", "rx_ring = 4000");
        std::fs::write(dir.join("lab.toml"), &text).unwrap();
        let err = Catalog::with_dir(&dir).unwrap_err();
        assert_eq!(err.file, dir.join("lab.toml"));
        assert!(err.line > 0);
    }
}
