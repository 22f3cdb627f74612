//! What routing a statement by its text costs (`atoll_core::statement_route::read`, which
//! `atoll proxy` runs once per new text and then answers from its cache): nanoseconds per
//! statement for pgbench's statements and a longer ORM-style query.
//!
//! `cargo bench -p atoll-core --bench statement_route`

use atoll_core::statement_route::read;
use std::hint::black_box;
use std::time::Instant;

const TEXTS: [(&str, &str); 4] = [
    ("pgbench -S select", "SELECT abalance FROM sh0001.pgbench_accounts WHERE aid = 48213;"),
    ("pgbench update", "UPDATE sh0001.pgbench_accounts SET abalance = abalance + -4211 WHERE aid = 48213;"),
    ("hinted", "/* atoll:shard=42 */ select * from users where id = $1"),
    (
        "ORM select (12 columns, join)",
        "SELECT \"users\".\"id\", \"users\".\"email\", \"users\".\"name\", \"users\".\"created_at\", \"users\".\"updated_at\", \"users\".\"plan\", \"p\".\"id\", \"p\".\"title\", \"p\".\"body\", \"p\".\"created_at\", \"p\".\"updated_at\", \"p\".\"user_id\" FROM \"sh0042\".\"users\" JOIN \"sh0042\".\"posts\" \"p\" ON \"p\".\"user_id\" = \"users\".\"id\" WHERE \"users\".\"id\" = $1 AND \"p\".\"created_at\" > $2 ORDER BY \"p\".\"created_at\" DESC LIMIT 20",
    ),
];

fn main() {
    const N: u32 = 200_000;
    for (what, text) in TEXTS {
        // Warm up, then time.
        for _ in 0..1000 {
            black_box(read(black_box(text)).ok());
        }
        let started = Instant::now();
        for _ in 0..N {
            black_box(read(black_box(text)).ok());
        }
        let ns = started.elapsed().as_nanos() as f64 / f64::from(N);
        println!("{what}: {ns:.0} ns per statement ({} bytes)", text.len());
    }
}
