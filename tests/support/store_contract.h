/* The store contract: what every sift_store backend must do, as cmocka
 * checks shared by the SQLite unit test (tests/unit/test_store.c) and the
 * PostgreSQL integration test (tests/integration/test_pgstore.c). Each
 * function expects a fresh, empty store in f->s and fails the running test
 * on the first difference. */
#ifndef SIFT_TEST_STORE_CONTRACT_H
#define SIFT_TEST_STORE_CONTRACT_H

#include "sift/arena.h"
#include "sift/store.h"

typedef struct store_contract store_contract;

struct store_contract {
    sift_store *s;       /* the store under test, empty */
    sift_arena *a;       /* results go here */
    const char *backend; /* sift_store_backend's answer: "sqlite", "postgres" */
    /* Opens a second, read-only connection to the same store. */
    int (*open_readonly)(store_contract *f, sift_store **out, sift_err *err);
    /* Backend check that the full-text index holds exactly the live
     * products (may be NULL). */
    void (*check_index)(store_contract *f);
    /* Backend check of the ranking on the sample catalog (may be NULL). */
    void (*check_ranking)(store_contract *f);
    void *ud; /* the test's own fixture */
};

/* Versioned upserts: replays, newer and older versions, case-insensitive
 * SKUs, attributes round trip, invalid products refused. */
void store_contract_upsert_versions(store_contract *f);
/* Tombstones: older deletes ignored, no resurrection at or below the
 * delete's version, deletes of unknown SKUs remembered, delete wins ties. */
void store_contract_delete_tombstones(store_contract *f);
/* begin/commit/rollback, nested begin refused, a read-only second
 * connection sees committed data and cannot write. */
void store_contract_transactions(store_contract *f);
/* Stock and price rows: versions per row, ordering, valid_from schedule. */
void store_contract_stock_and_prices(store_contract *f);
/* The JSON Lines loader's bad-line reports and counts. */
void store_contract_load_bad_lines(store_contract *f);
/* The sample catalog: every SKU first for its own string, stemming,
 * diacritics, OR fallback, query syntax ignored, an idempotent reload. */
void store_contract_sample_catalog(store_contract *f);

#endif
