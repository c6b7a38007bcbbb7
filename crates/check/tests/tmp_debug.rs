use stateright::Model;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use synod_check::{Bounds, SynodModel, Action, State, model::describe};
use synod_paxos::PlantedBug;
fn fp(s: &State) -> u64 { let mut h = std::hash::DefaultHasher::new(); s.hash(&mut h); h.finish() }
#[test]
fn show() {
    let mut b = Bounds::small();
    b.planted = Some(PlantedBug::SkipPersist);
    b.ticks = 5; b.commands = 0; b.changes = vec![];
    let m = SynodModel::new(b);
    let init = m.init_states().remove(0);
    // BFS to depth 8
    let mut seen: HashMap<u64, (usize, String)> = HashMap::new();
    let mut frontier = vec![(init.clone(), String::new())];
    seen.insert(fp(&init), (0, String::new()));
    for d in 1..=8 {
        let mut next = vec![];
        for (s, p) in &frontier {
            let mut a = Vec::new();
            m.actions(s, &mut a);
            for x in a {
                let desc = format!("{p} | {}", describe(s, &x));
                let n = m.next_state(s, x).unwrap();
                if !n.ok() { println!("FOUND at {d}: {desc}"); return; }
                let f = fp(&n);
                if seen.contains_key(&f) { continue; }
                seen.insert(f, (d, desc.clone()));
                next.push((n, desc));
            }
        }
        println!("depth {d}: {}", next.len());
        frontier = next;
    }
    // walk the known path
    let mut s = init;
    let mut p = String::new();
    for d in 1..=8 {
        let mut a = Vec::new();
        m.actions(&s, &mut a);
        let pick = a.iter().find(|x| matches!(x, Action::Restart(_)))
            .or_else(|| a.iter().find(|x| matches!(x, Action::Deliver(k) if s.net[*k].from == 2 && s.net[*k].to == 1 && d > 5)))
            .or_else(|| a.iter().find(|x| matches!(x, Action::Crash(0)) && d > 6))
            .or_else(|| a.iter().find(|x| matches!(x, Action::Cut(_))))
            .or_else(|| a.iter().find(|x| matches!(x, Action::TickAll))).cloned().unwrap();
        p = format!("{p} | {}", describe(&s, &pick));
        s = m.next_state(&s, pick).unwrap();
        println!("path depth {d}: seen as {:?}\n   mine {p}", seen.get(&fp(&s)));
    }
}
