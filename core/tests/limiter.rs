//! The in-process limiter against the Redis one (real Redis on 127.0.0.1:6379): one sequence of
//! decisions, the same answers.

use std::time::Duration;

use truenumber_core::limits::{
    Check, Decision, InProcessLimiter, LimiterBackend, RateLimiter, SlidingWindowLimiter,
};

const REDIS_URL: &str = "redis://127.0.0.1:6379";

enum Step {
    Check(&'static str, u32),
    Sleep(u64),
}

#[tokio::test]
async fn in_process_answers_as_redis_does() {
    use Step::{Check, Sleep};
    let prefix = format!("tntest_{}:", uuid::Uuid::new_v4().simple());
    let redis = RateLimiter::from(
        SlidingWindowLimiter::new(REDIS_URL, &prefix, Duration::from_secs(2)).unwrap(),
    );
    let in_process = RateLimiter::from(InProcessLimiter::new());
    assert_eq!(redis.backend(), LimiterBackend::Redis);
    assert_eq!(in_process.backend(), LimiterBackend::InProcess);
    redis.ping().await.unwrap();
    // Every check lands at least 100 ms from a window edge (window 1 s), so scheduling noise
    // cannot put the two limiters on different sides of one.
    let window = Duration::from_millis(1000);
    let steps = [
        // t≈0: `a` fills (3), the 4th is refused; `b` admits one of 2.
        Check("a", 3),
        Check("a", 3),
        Check("a", 3),
        Check("a", 3),
        Check("b", 2),
        Check("zero", 0),
        Sleep(500),
        // t≈500: `a` still full; `b` fills; `a` raised to 5 takes two more.
        Check("a", 3),
        Check("b", 2),
        Check("b", 2),
        Check("a", 5),
        Check("a", 5),
        Check("a", 5),
        // ... and lowered to 1: refused, nothing left.
        Check("a", 1),
        Sleep(600),
        // t≈1100: the three first `a` and the first `b` have left.
        Check("a", 5),
        Check("a", 5),
        Check("a", 5),
        Check("a", 5),
        Check("b", 2),
        Check("b", 2),
        Check("zero", 0),
    ];
    let mut compared = 0;
    for (i, step) in steps.iter().enumerate() {
        match *step {
            Sleep(ms) => tokio::time::sleep(Duration::from_millis(ms)).await,
            Check(subject, limit) => {
                let r: Decision = redis.check(subject, limit, window).await.unwrap();
                let p: Decision = in_process.check(subject, limit, window).await.unwrap();
                let at =
                    format!("step {i} ({subject}, limit {limit}): redis {r:?}, in-process {p:?}");
                assert_eq!(
                    (r.allowed, r.remaining, r.limit, r.window),
                    (p.allowed, p.remaining, p.limit, p.window),
                    "{at}"
                );
                assert!(r.reset_ms.abs_diff(p.reset_ms) <= 50, "{at}");
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 20);

    // An admission given back frees its slot at once, in both; a refusal has no ticket.
    for limiter in [&redis, &in_process] {
        let admitted = limiter.check("released", 1, window).await.unwrap();
        let ticket = admitted.ticket.expect("an admission has a ticket");
        let refused = limiter.check("released", 1, window).await.unwrap();
        assert!(!refused.allowed && refused.ticket.is_none());
        limiter.release("released", ticket).await.unwrap();
        assert!(limiter.check("released", 1, window).await.unwrap().allowed);
        // Giving back twice, or a ticket never issued, changes nothing.
        limiter.release("released", ticket).await.unwrap();
        limiter.release("released", ticket ^ 1).await.unwrap();
        assert!(!limiter.check("released", 1, window).await.unwrap().allowed);
    }
}

#[tokio::test]
async fn the_in_process_backend_is_always_up() {
    let limiter = RateLimiter::from(InProcessLimiter::new());
    limiter.ping().await.unwrap();
    assert_eq!(limiter.fail_open_total(), 0);
    let d = limiter
        .check("initiate:comp_x", 1, Duration::from_secs(3600))
        .await
        .unwrap();
    assert!(d.allowed);
    assert_eq!(d.policy_header("initiate"), "\"initiate\";q=1;w=3600");
    assert_eq!(d.ratelimit_header("initiate"), "\"initiate\";r=0;t=3600");
}

/// A chain of limits (initiate: the company's, then the number's) decided in one call: the
/// first refusal ends it, so a refused company counts nothing against the number, and a refused
/// number has still counted against the company. The same answers from both backends.
#[tokio::test]
async fn a_chain_counts_up_to_its_first_refusal_in_both_backends() {
    let prefix = format!("tntest_{}:", uuid::Uuid::new_v4().simple());
    let redis = RateLimiter::from(
        SlidingWindowLimiter::new(REDIS_URL, &prefix, Duration::from_secs(2)).unwrap(),
    );
    let in_process = RateLimiter::from(InProcessLimiter::new());
    let window = Duration::from_secs(60);
    let chain = |company: u32, number: u32| {
        [
            Check {
                subject: "company",
                limit: company,
                window,
            },
            Check {
                subject: "number",
                limit: number,
                window,
            },
        ]
    };
    // (company limit, number limit) → what each decided: (allowed, remaining) per limit.
    type Step = ((u32, u32), &'static [(bool, u32)]);
    let steps: [Step; 6] = [
        ((3, 1), &[(true, 2), (true, 0)]),
        // The number is full: refused, but the company counted this one.
        ((3, 1), &[(true, 1), (false, 0)]),
        ((3, 2), &[(true, 0), (true, 0)]),
        // The company is full: the number is not even looked at, so not counted.
        ((3, 3), &[(false, 0)]),
        // Raised, both admit: the number's count is still 2 (the refusal above left it).
        ((5, 3), &[(true, 1), (true, 0)]),
        ((5, 3), &[(true, 0), (false, 0)]),
    ];
    for limiter in [&redis, &in_process] {
        let mut tickets = Vec::new();
        for (i, ((company, number), expected)) in steps.iter().enumerate() {
            let decisions = limiter
                .check_chain(&chain(*company, *number))
                .await
                .unwrap();
            let got: Vec<(bool, u32)> =
                decisions.iter().map(|d| (d.allowed, d.remaining)).collect();
            assert_eq!(
                &got,
                expected,
                "step {i} on {:?}: {decisions:?}",
                limiter.backend()
            );
            // One ticket per chain, on every admission of it.
            let admitted: Vec<u64> = decisions.iter().filter_map(|d| d.ticket).collect();
            assert!(admitted.windows(2).all(|w| w[0] == w[1]), "{admitted:?}");
            tickets.extend(decisions.last().and_then(|d| d.ticket));
        }
        // Giving back the number's last admission frees its slot, and only the number's.
        let last = *tickets.last().unwrap();
        limiter.release("number", last).await.unwrap();
        let after = limiter.check_chain(&chain(6, 3)).await.unwrap();
        let got: Vec<(bool, u32)> = after.iter().map(|d| (d.allowed, d.remaining)).collect();
        assert_eq!(got, [(true, 0), (true, 0)], "{:?}", limiter.backend());
        // An empty chain decides nothing.
        assert!(limiter.check_chain(&[]).await.unwrap().is_empty());
    }
}
