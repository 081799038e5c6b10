//! The in-process limiter against the Redis one (real Redis on 127.0.0.1:6379): one sequence of
//! decisions, the same answers.

use std::time::Duration;

use truenumber_core::limits::{
    Decision, InProcessLimiter, LimiterBackend, RateLimiter, SlidingWindowLimiter,
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
