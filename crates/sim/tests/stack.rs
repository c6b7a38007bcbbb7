//! The whole stack under the simulator (`synod-sim --stack`), CI-sized:
//! clean seeds pass, a seed runs the same way twice, and the stack's
//! planted bugs are caught.

use synod_sim::stack::{Stack, StackOptions, StackPlant, StackReport};

fn run(seed: u64, nodes: usize, plant: Option<StackPlant>) -> StackReport {
    Stack::new(StackOptions { seed, nodes, ops: 150, plant, protocol_plant: None }).run()
}

#[test]
fn clean_seeds_pass_every_check() {
    let mut total = StackReport::default();
    for seed in 0..12 {
        let r = run(seed, if seed % 3 == 0 { 5 } else { 3 }, None);
        assert_eq!(r.violation, None, "seed {seed}");
        total.add(&r);
    }
    // The runs exercised what they check.
    assert!(total.ops >= 12 * 150, "{}", total.counts());
    assert!(total.crashes > 0 && total.watched > 0 && total.leases > 0 && total.locks > 0, "{}", total.counts());
}

#[test]
fn a_seed_runs_the_same_way_twice() {
    let (a, b) = (run(3, 3, None), run(3, 3, None));
    assert_eq!(a.counts(), b.counts());
    assert_eq!(a.violation, b.violation);
}

#[test]
fn the_stacks_planted_bugs_are_caught() {
    for plant in StackPlant::ALL {
        let caught = (0..50).find(|&seed| run(seed, 3, Some(plant)).violation.is_some());
        assert!(caught.is_some(), "planted bug {} was not caught in 50 seeds", plant.name());
    }
}
