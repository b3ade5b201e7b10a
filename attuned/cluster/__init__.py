"""Several hosts, one PostgreSQL: one leader registers packs, followers serve the same trees."""
