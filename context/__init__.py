"""All of Omnivoice's state: caller sessions in Redis (and, later, customer history in SQL)."""
