//! Unit tests of `fair`.

use super::*;

fn rq(n: usize) -> FairRunQueue {
    let mut rq = FairRunQueue::new(FairTunables::default());
    rq.reserve(n);
    rq
}

fn drain(rq: &mut FairRunQueue) -> Vec<TaskId> {
    core::iter::from_fn(|| rq.pick_next().map(|(id, _)| id)).collect()
}

#[test]
fn weight_table_spot_values() {
    assert_eq!(nice_to_weight(-20), 88761);
    assert_eq!(nice_to_weight(0), NICE_0_LOAD);
    assert_eq!(nice_to_weight(19), 15);
    assert_eq!(nice_to_weight(-5), 3121);
    assert_eq!(nice_to_weight(5), 335);
    for pair in SCHED_PRIO_TO_WEIGHT.windows(2) {
        let ratio = pair[0] as f64 / pair[1] as f64;
        assert!((1.19..=1.29).contains(&ratio), "{pair:?} ratio {ratio}");
    }
}

#[test]
#[should_panic(expected = "nice 20 out of range")]
fn nice_out_of_range_panics() {
    nice_to_weight(20);
}

#[test]
fn calc_delta_fair_scales_by_weight() {
    assert_eq!(calc_delta_fair(1_000_000, NICE_0_LOAD), 1_000_000);
    assert_eq!(calc_delta_fair(1_000_000, 2048), 500_000);
    assert_eq!(calc_delta_fair(1_000, 15), 68_266);
    assert_eq!(calc_delta_fair(u64::MAX, 15), u64::MAX);
}

#[test]
fn update_curr_charges_weighted_vruntime() {
    let mut se = FairEntity::new(5);
    set_next_entity(&mut se, 1_000);
    assert_eq!(update_curr(&mut se, 2_001_000), 2_000_000);
    assert_eq!(se.sum_exec_runtime, 2_000_000);
    assert_eq!(se.vruntime, 2_000_000 * 1024 / 335);
    assert_eq!(se.exec_start_ns, 2_001_000);
    assert_eq!(update_curr(&mut se, 2_001_000), 0);
}

#[test]
fn pick_order_by_vruntime_ties_in_insertion_order() {
    let mut rq = rq(8);
    rq.enqueue(0, 300, 1024);
    rq.enqueue(1, 100, 1024);
    rq.enqueue(2, 200, 1024);
    rq.enqueue(3, 100, 1024);
    rq.enqueue(4, 100, 1024);
    rq.enqueue(5, 50, 1024);
    assert_eq!(rq.peek_min_vruntime(), Some(50));
    assert_eq!(rq.peek_next(), Some(5));
    assert_eq!(rq.pick_next(), Some((5, 50)));
    assert_eq!(drain(&mut rq), vec![1, 3, 4, 2, 0]);
    assert_eq!(rq.pick_next(), None);
    assert_eq!(rq.load_weight(), 0);
}

#[test]
fn dequeue_arbitrary_entry() {
    let mut rq = rq(8);
    for (id, v) in [(0, 40), (1, 10), (2, 30), (3, 20), (4, 50), (5, 25)] {
        rq.enqueue(id, v, 100 + id as u64);
    }
    assert_eq!(rq.load_weight(), 615);
    assert!(rq.dequeue(3));
    assert!(!rq.dequeue(3));
    assert!(!rq.dequeue(99));
    assert!(rq.dequeue(1)); // the leftmost
    assert!(!rq.is_queued(1));
    assert_eq!(rq.nr_running(), 4);
    assert_eq!(rq.load_weight(), 615 - 103 - 101);
    rq.enqueue(3, 35, 103); // may re-enqueue after dequeue
    assert_eq!(drain(&mut rq), vec![5, 2, 3, 0, 4]);
}

#[test]
fn randomized_dequeue_against_model() {
    let mut rq = rq(32);
    let mut model: Vec<(u64, u64, TaskId)> = Vec::new();
    let (mut x, mut seq) = (0x2545_F491_4F6C_DD1Du64, 0);
    for _ in 0..5_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let id = (x % 32) as TaskId;
        let pos = model.iter().position(|m| m.2 == id);
        match (x >> 8) % 3 {
            0 if pos.is_none() => {
                let v = (x >> 16) % 16;
                rq.enqueue(id, v, 1);
                model.push((v, seq, id));
                seq += 1;
            }
            1 => {
                model.sort_unstable();
                let want = (!model.is_empty()).then(|| model.remove(0));
                assert_eq!(rq.pick_next(), want.map(|m| (m.2, m.0)));
            }
            _ => assert_eq!(rq.dequeue(id), pos.map(|p| model.remove(p)).is_some()),
        }
        assert_eq!(rq.nr_running(), model.len());
        assert_eq!(rq.load_weight(), model.len() as u64);
        assert_eq!(rq.peek_min_vruntime(), model.iter().map(|m| m.0).min());
    }
}

#[test]
fn min_vruntime_is_monotonic() {
    let mut rq = rq(4);
    rq.enqueue(0, 1_000, 1024);
    rq.update_min_vruntime(Some(5_000));
    assert_eq!(rq.min_vruntime(), 1_000); // min(curr, leftmost)
    rq.update_min_vruntime(None);
    assert_eq!(rq.min_vruntime(), 1_000);
    rq.dequeue(0);
    rq.update_min_vruntime(Some(5_000));
    assert_eq!(rq.min_vruntime(), 5_000); // only curr
    rq.enqueue(1, 2_000, 1024); // a placed-back sleeper lower than min
    rq.update_min_vruntime(Some(4_000));
    assert_eq!(rq.min_vruntime(), 5_000); // never backwards
    rq.update_min_vruntime(None);
    assert_eq!(rq.min_vruntime(), 5_000);
}

#[test]
fn place_entity_sleeper_credit_clamp() {
    let mut rq = rq(4);
    rq.enqueue(0, 100_000_000, 1024);
    rq.update_min_vruntime(None);
    let half_latency = rq.tunables().sched_latency_ns / 2;
    let mut new = FairEntity::new(0);
    rq.place_entity(&mut new, true);
    assert_eq!(new.vruntime, 100_000_000);
    let mut long_sleeper = FairEntity::new(0);
    long_sleeper.vruntime = 10;
    rq.place_entity(&mut long_sleeper, false);
    assert_eq!(long_sleeper.vruntime, 100_000_000 - half_latency);
    let mut short_sleeper = FairEntity::new(0);
    short_sleeper.vruntime = 99_000_000;
    rq.place_entity(&mut short_sleeper, false);
    assert_eq!(short_sleeper.vruntime, 99_000_000); // keeps its own, no boost
    let mut early = FairEntity::new(0);
    rq_empty_place(&mut early);
    assert_eq!(early.vruntime, 0); // saturates at 0 near boot
}

fn rq_empty_place(se: &mut FairEntity) {
    rq(1).place_entity(se, false);
}

#[test]
fn period_and_slice() {
    let rq = rq(1);
    assert_eq!(rq.sched_period(1), 6_000_000);
    assert_eq!(rq.sched_period(8), 6_000_000);
    assert_eq!(rq.sched_period(9), 9 * 750_000);
    assert_eq!(rq.sched_slice(1024, 2, 2048), 3_000_000);
    assert_eq!(rq.sched_slice(1024, 1, 0), 6_000_000);
    assert_eq!(rq.sched_slice(3121, 3, 4480), 6_000_000 * 3121 / 4480);
}

#[test]
fn preempt_tick_after_slice() {
    let rq = rq(1);
    let mut curr = FairEntity::new(0);
    set_next_entity(&mut curr, 0);
    update_curr(&mut curr, 3_000_000);
    assert!(!rq.check_preempt_tick(&curr, 2, 2048)); // exactly the slice
    update_curr(&mut curr, 3_000_001);
    assert!(rq.check_preempt_tick(&curr, 2, 2048));
    set_next_entity(&mut curr, 3_000_001);
    assert!(!rq.check_preempt_tick(&curr, 2, 2048));
}

#[test]
fn preempt_wakeup_uses_scaled_granularity() {
    let rq = rq(1);
    let mut curr = FairEntity::new(0);
    curr.vruntime = 10_000_000;
    let mut woken = FairEntity::new(0);
    woken.vruntime = 9_000_000; // exactly 1 ms behind: not enough
    assert!(!rq.check_preempt_wakeup(&curr, &woken));
    woken.vruntime = 8_999_999;
    assert!(rq.check_preempt_wakeup(&curr, &woken));
    let mut heavy = FairEntity::new(-5); // gran scaled down to ~328 us
    heavy.vruntime = 9_600_000;
    assert!(rq.check_preempt_wakeup(&curr, &heavy));
    let mut light = FairEntity::new(5); // gran scaled up to ~3.06 ms
    light.vruntime = 8_000_000;
    assert!(!rq.check_preempt_wakeup(&curr, &light));
    assert!(!rq.check_preempt_wakeup(&woken, &curr)); // woken ahead
}

/// Three tasks (nice 0, 5, -5) on one CPU for 10 s with a 1 ms tick:
/// each one's CPU share must be within 2% (relative) of weight / total.
#[test]
fn simulation_shares_follow_weights() {
    const TICK_NS: u64 = 1_000_000;
    const RUN_NS: u64 = 10_000_000_000;
    let mut tasks = [FairEntity::new(0), FairEntity::new(5), FairEntity::new(-5)];
    let total: u64 = tasks.iter().map(|t| t.weight).sum();
    let mut rq = rq(tasks.len());
    for (id, se) in tasks.iter_mut().enumerate() {
        rq.place_entity(se, true);
        rq.enqueue(id, se.vruntime, se.weight);
    }
    let (mut now, mut switches) = (0, 0);
    let (mut curr, _) = rq.pick_next().unwrap();
    set_next_entity(&mut tasks[curr], now);
    while now < RUN_NS {
        now += TICK_NS;
        let se = &mut tasks[curr];
        update_curr(se, now);
        rq.update_min_vruntime(Some(se.vruntime));
        let nr = rq.nr_running() + 1;
        if rq.check_preempt_tick(se, nr, rq.load_weight() + se.weight) {
            rq.enqueue(curr, se.vruntime, se.weight); // put_prev_entity
            curr = rq.pick_next().unwrap().0;
            set_next_entity(&mut tasks[curr], now);
            switches += 1;
        }
    }
    assert!(switches > 1_000, "only {switches} context switches");
    let ran: u64 = tasks.iter().map(|t| t.sum_exec_runtime).sum();
    assert_eq!(ran, RUN_NS);
    for (id, se) in tasks.iter().enumerate() {
        let share = se.sum_exec_runtime as f64 / ran as f64;
        let want = se.weight as f64 / total as f64;
        let err = (share - want).abs() / want;
        assert!(err < 0.02, "task {id}: share {share:.4} want {want:.4}");
    }
}
