//! The simulation's wallets: what they submit, to which node and when (transfers, double
//! spends, registrations and collateral spends, and a measurement's load).

use super::*;

impl Sim {
    pub(super) fn schedule_clients(&mut self) {
        if let Some(window) = self.sc.wan.as_ref().map(|w| w.window) {
            return self.schedule_load(window);
        }
        let honest: Vec<usize> = (0..self.nodes.len()).filter(|i| self.honest(*i)).collect();
        let mut outputs: Vec<(usize, OutPoint)> = Vec::new();
        let genesis_txid = self.genesis.build().0.transactions[0].txid();
        for i in 0..self.sc.genesis_outputs {
            outputs.push((
                i % self.client_keys.len(),
                OutPoint::new(genesis_txid, i as u32),
            ));
        }
        outputs.shuffle(&mut self.rng);
        let span = self.sc.submit_span.max(101);
        for _ in 0..self.sc.transfers {
            let Some((owner, op)) = outputs.pop() else {
                break;
            };
            let tx = self.transfer(owner, op, 1);
            let node = *honest.choose(&mut self.rng).unwrap_or(&0);
            let at = EPOCH + self.rng.gen_range(100..span);
            self.submit(at, node, tx, true);
        }
        self.schedule_set_changes(&honest, genesis_txid);
        for _ in 0..self.sc.double_spends {
            let Some((owner, op)) = outputs.pop() else {
                break;
            };
            let a = self.transfer(owner, op, 1);
            let b = self.transfer(owner, op, 2);
            let na = *honest.choose(&mut self.rng).unwrap_or(&0);
            let nb = *honest.choose(&mut self.rng).unwrap_or(&0);
            let at = EPOCH + self.rng.gen_range(100..span);
            self.submit(at, na, a, false);
            self.submit(at, nb, b, false);
        }
    }

    /// A measurement's load: before the window, wallets split genesis outputs into
    /// [`SPLIT`] coins each (a genesis transaction holds at most a thousand outputs); inside
    /// it, one transfer per coin at a uniformly random time, each to a random honest node.
    fn schedule_load(&mut self, window: (Millis, Millis)) {
        let honest: Vec<usize> = (0..self.nodes.len()).filter(|i| self.honest(*i)).collect();
        let genesis_txid = self.genesis.build().0.transactions[0].txid();
        let mut coins: Vec<(usize, OutPoint)> = Vec::new();
        let splits = self.sc.transfers.div_ceil(SPLIT);
        for g in 0..splits.min(self.sc.genesis_outputs) {
            let owner = g % self.client_keys.len();
            let key = self.client_keys[owner].clone();
            let each = (100 * timed::types::ATOMS_PER_TIME - 100_000) / SPLIT as u64;
            let split = Arc::new(signed_transfer(
                NETWORK,
                &key,
                &[OutPoint::new(genesis_txid, g as u32)],
                (0..SPLIT)
                    .map(|_| TxOutput {
                        amount: Amount(each),
                        key_hash: key.public_key().key_hash(),
                    })
                    .collect(),
            ));
            self.txs.insert(split.txid(), Arc::clone(&split));
            coins.extend((0..SPLIT).map(|k| (owner, OutPoint::new(split.txid(), k as u32))));
            let node = *honest.choose(&mut self.rng).unwrap_or(&0);
            self.submit(EPOCH + 10, node, split, true);
        }
        for (owner, op) in coins.into_iter().take(self.sc.transfers) {
            let amount =
                Amount((100 * timed::types::ATOMS_PER_TIME - 100_000) / SPLIT as u64 - 1_000);
            let tx = self.pay(owner, op, amount);
            let node = *honest.choose(&mut self.rng).unwrap_or(&0);
            let at = EPOCH + self.rng.gen_range(window.0..window.1);
            if let Some(w) = &mut self.wan {
                w.submitted(tx.txid(), node, at);
            }
            self.submit(at, node, tx, true);
        }
    }

    /// Submits each joiner's registration and each leaver's collateral spend at its time.
    fn schedule_set_changes(&mut self, honest: &[usize], genesis_txid: Txid) {
        let set = self.genesis.build().1;
        for (j, (node, at)) in self.sc.joins.clone().into_iter().enumerate() {
            let first = (self.sc.genesis_outputs + 2 * j) as u32;
            let key = self.nodes[node].key.clone();
            let tx = Arc::new(registration(
                &key,
                self.sc.nodes[node].tier,
                OutPoint::new(genesis_txid, first),
                OutPoint::new(genesis_txid, first + 1),
                format!("127.0.0.1:{}", 30000 + node),
            ));
            self.submit_to_any(honest, EPOCH + at, tx);
        }
        for (node, at) in self.sc.leaves.clone() {
            let key = self.nodes[node].key.clone();
            let Some(m) = set.get(&key.public_key()) else {
                continue;
            };
            let tx = Arc::new(signed_transfer(
                NETWORK,
                &key,
                &[m.collateral],
                vec![TxOutput {
                    amount: Amount(m.tier.collateral().0 - 100_000),
                    key_hash: key.public_key().key_hash(),
                }],
            ));
            self.submit_to_any(honest, EPOCH + at, tx);
        }
    }

    /// A wallet sends `tx` to `node` at `at`.
    fn submit(&mut self, at: Millis, node: usize, tx: Arc<Transaction>, expect_final: bool) {
        self.push(
            at,
            Event::Submit {
                node,
                tx,
                expect_final,
            },
        );
    }

    /// A wallet sends `tx` at `at` to a random honest node, expecting it final.
    fn submit_to_any(&mut self, honest: &[usize], at: Millis, tx: Arc<Transaction>) {
        self.txs.insert(tx.txid(), Arc::clone(&tx));
        let node = *honest.choose(&mut self.rng).unwrap_or(&0);
        self.submit(at, node, tx, true);
    }

    /// A genesis coin of `owner` paid to the next wallet; `variant` makes rival spends.
    fn transfer(&mut self, owner: usize, op: OutPoint, variant: u64) -> Arc<Transaction> {
        let amount = Amount(100 * timed::types::ATOMS_PER_TIME - 10_000 * variant);
        self.pay(owner, op, amount)
    }

    /// `owner`'s coin `op` paid to the next wallet, `amount` of it (the rest is the fee).
    fn pay(&mut self, owner: usize, op: OutPoint, amount: Amount) -> Arc<Transaction> {
        let key = self.client_keys[owner].clone();
        let to = self.client_keys[(owner + 1) % self.client_keys.len()]
            .public_key()
            .key_hash();
        let tx = Arc::new(signed_transfer(
            NETWORK,
            &key,
            &[op],
            vec![TxOutput {
                amount,
                key_hash: to,
            }],
        ));
        self.txs.insert(tx.txid(), Arc::clone(&tx));
        tx
    }
}

/// A masternode registration of `key` as operator and owner: `collateral` holds exactly the
/// tier's amount, `fee_money` pays the fee. The one place the simulation builds registrations
/// (adapt it here when the registration format changes).
fn registration(
    key: &SecretKey,
    tier: Tier,
    collateral: OutPoint,
    fee_money: OutPoint,
    p2p_addr: String,
) -> Transaction {
    let mut tx = timed::types::transfer::signed_with_payload(
        NETWORK,
        key,
        &[fee_money],
        vec![TxOutput {
            amount: Amount(10 * timed::types::ATOMS_PER_TIME - 100_000),
            key_hash: key.public_key().key_hash(),
        }],
        timed::types::TxPayload::from(timed::types::MasternodeRegistration::new(
            tier, collateral, key, p2p_addr,
        )),
    );
    // The operator's consent; the txid, which the input signed, leaves it out.
    tx.sign_operator(NETWORK, key);
    tx
}
