"""The live DEX executor: swaps ``OrderRequest``s through a Uniswap V2 Router02.

For each order: quote with ``getAmountsOut`` and estimate gas (in parallel), set the
minimum output once (:func:`engine.amm.min_amount_out` of the quote, or the order's
explicit ``min_amount_out``), sign locally with the next nonce, send, publish
``OrderSubmitted`` (so the journal has tx hash and nonce before any waiting), then
wait for the receipt. Everything before the signature must be done within
``quote_timeout_seconds`` or the order fails (``QUOTE_TIMEOUT``): a dead node never
leaves an order hanging unsent. A receipt that does not come within ``receipt_timeout_seconds``
makes the order PENDING: it is polled, replaced at a higher fee (same nonce) if stuck,
and never assumed failed or re-sent with a new nonce. The fill is read from the
pair's ``Swap`` event; a mined revert is explained by replaying the call.

Guards at start: the node must be the configured ``chain_id``; a chain other than the
local dev chain (31337) is traded only with ``allow_real_funds: true``; the key must be
``account``'s when that is set. The start is logged with the account, the chain, the
balances on chain and the executor's own limits.

With ``dry_run`` nothing is signed or sent (no key is loaded): each order is quoted and
estimated on the real pool and filled on paper (:mod:`.dry_run`). Without it, the
account's balances on chain are the portfolio's start and are reconciled with it
(:mod:`.balances`).

:meth:`UniswapV2Executor.reconcile` picks up transactions sent by an earlier process
(from journalled ``OrderSubmitted`` records) and publishes their outcome exactly once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from web3 import AsyncWeb3

from adapters.evm.approvals import ApprovalError, Approvals
from adapters.evm.balances import AccountBalances, read_balances
from adapters.evm.fees import GWEI, FeeCapExceededError, FeeOracle
from adapters.evm.keys import Signer, load_signer
from adapters.evm.nonces import NonceManager
from adapters.evm.receipts import Receipt, ReceiptWatcher, RpcFailedError
from adapters.evm.reverts import reason_code, replay_revert
from adapters.evm.rpc import (
    SWAP_EXACT_TOKENS,
    JsonRpc,
    RevertError,
    RpcError,
    calldata,
    public_url,
    url_secrets,
)
from adapters.evm.sender import AMBIGUOUS_SEND_ERRORS, OnSigned, SendRejectedError
from adapters.evm.sender import TransactionSender as Sender
from adapters.uniswap_v2.artifacts import CORE, PERIPHERY, load_artifact, router_abi
from adapters.uniswap_v2.balances import AccountBalanceSource
from adapters.uniswap_v2.config import LOCAL_DEV_CHAIN_ID, UniswapV2ExecutorConfig
from adapters.uniswap_v2.dry_run import DryRunQuoter, DryRunRejected
from adapters.uniswap_v2.fills import quote_per_base, swap_from_receipt
from adapters.uniswap_v2.guards import check_chain, check_portfolio
from adapters.uniswap_v2.local_chain import LocalChain
from adapters.uniswap_v2.metrics import ExecutorCollector, ExecutorStats
from adapters.uniswap_v2.orders import TERMINAL, OrderStatus, SubmittedRecord, TrackedOrder
from adapters.uniswap_v2.pool_state import PoolReporter
from adapters.uniswap_v2.precheck import order_problem
from adapters.uniswap_v2.recovery import journal_history, submitted_records
from engine.amm import min_amount_out, swap_fee
from engine.clock import SimulatedClock
from engine.component import Component, ComponentContext
from engine.events import Event, OrderFailed, OrderFilled, OrderRequest, OrderSubmitted
from engine.instruments import Token
from engine.journal import Journal, journal_for
from engine.reasons import OrderFailReason
from engine.redaction import Redactor

__all__ = ["OrderStatus", "SubmittedRecord", "UniswapV2Executor", "UniswapV2ExecutorConfig"]

# The node could not be reached or did not answer in time.
RPC_ERRORS: tuple[type[BaseException], ...] = (*AMBIGUOUS_SEND_ERRORS, RpcFailedError)
SWAP_TYPES = ["uint256", "uint256", "address[]", "address", "uint256"]


class _Dropped(Exception):
    """The order's transaction can never be mined: ``reason`` says why."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class UniswapV2Executor(Component):
    """Swaps approved orders on a Uniswap V2 router from one signing account, or fills
    them on paper at the router's exact quote (``dry_run``)."""

    needs_wall_clock = True

    Config = UniswapV2ExecutorConfig

    def __init__(
        self,
        name: str,
        settings: UniswapV2ExecutorConfig,
        context: ComponentContext,
        depends_on: tuple[str, ...] = (),
    ) -> None:
        super().__init__(name, settings, context, depends_on)
        # For published text: the secrets, and the RPC URL's path (API keys live there).
        self._redactor = Redactor([*context.secrets.values(), *url_secrets(settings.rpc_url)])
        self._chain: LocalChain | None = None
        self.signer: Signer | None = None  # None in a dry run: nothing is ever signed
        self.address: str | None = settings.account
        if settings.chain is None and not settings.dry_run:
            self._use_signer(load_signer(context.secrets, settings.keystore_path))
        self.orders: dict[str, TrackedOrder] = {}
        # What the journal holds of this market's orders (OrderSubmitted/Filled/Failed).
        self._history: dict[str, list[Event]] = {}
        self._chain_problem: str | None = None
        self._journal: Journal | None = None  # the engine's journal, when catching up
        self._replayed: set[str] = set()
        self.stats = ExecutorStats()
        self._tasks: set[asyncio.Task[None]] = set()
        self.w3: AsyncWeb3[Any] | None = None
        self._rpc: JsonRpc | None = None
        self._signed: set[str] = set()  # orders with a signed swap not yet settled
        self._activity = 0  # bumped at every signature and settlement
        self.balance_source: AccountBalanceSource | None = None
        journal = settings.journal_path
        self._journal_paths = [Path(journal).resolve()] if journal else []
        self.dry_run: DryRunQuoter | None = None

    # -- lifecycle ---------------------------------------------------------------------

    async def on_start(self) -> None:
        if self.settings.chain is not None:
            self._take_local_chain(self.settings.chain)
        s = self.settings
        self.rpc = self._rpc = rpc = await JsonRpc.connect(s.rpc_url, s.rpc_timeout_seconds)
        self.w3 = w3 = AsyncWeb3(rpc.provider)  # for start-up reads via contract ABIs
        self.chain_id = await w3.eth.chain_id
        check_chain(s, self.chain_id, self.address)
        self.router = w3.eth.contract(address=s.router, abi=router_abi())  # type: ignore[arg-type]
        factory_address = await self.router.functions.factory().call()
        factory = w3.eth.contract(
            address=factory_address, abi=load_artifact(CORE, "UniswapV2Factory").abi
        )
        pair = await factory.functions.getPair(s.base_token, s.quote_token).call()
        if int(pair, 16) == 0:
            raise RuntimeError(f"no Uniswap V2 pair for {s.symbol} at factory {factory_address}")
        self.pair = w3.to_checksum_address(pair)
        self.base_is_token0 = int(s.base_token, 16) < int(s.quote_token, 16)
        erc20 = load_artifact(PERIPHERY, "ERC20").abi
        base = w3.eth.contract(address=s.base_token, abi=erc20)  # type: ignore[arg-type]
        quote = w3.eth.contract(address=s.quote_token, abi=erc20)  # type: ignore[arg-type]
        self.base_decimals = int(await base.functions.decimals().call())
        self.quote_decimals = int(await quote.functions.decimals().call())
        self.base_name, self.quote_name = s.symbol.split("/")
        check_portfolio(self, self.base_decimals, self.quote_decimals)

        self._chain_deadlines = s.deadline_clock == "chain" or (
            s.deadline_clock == "auto" and isinstance(self.clock, SimulatedClock)
        )
        self.fees = FeeOracle(
            self._latest_block,
            priority_fee_wei=int(s.priority_fee_gwei * GWEI),
            max_fee_cap_wei=int(s.max_fee_gwei * GWEI),
            ttl_seconds=s.fee_ttl_seconds,
        )
        if s.dry_run:
            self.dry_run = DryRunQuoter(rpc, s.router, self.address, s.dry_run_gas)
        else:
            self._start_sending(rpc)
        self.register_collector(
            ExecutorCollector(
                self.name,
                self.stats,
                pending=self.pending_count,
                oldest_pending=self.oldest_pending_seconds,
                resyncs=lambda: self.nonces.resyncs if self.signer else 0,
                failed_polls=lambda: self.receipts.failed_polls if self.signer else 0,
            )
        )
        if self._chain is not None and not s.dry_run:
            # The local chain's fresh account approves the router for both tokens now: a
            # first order waiting for its approval would trade a pool the replay has moved on.
            for token in (s.base_token, s.quote_token):
                await self.approvals.ensure(token)
        if self._chain is None and s.pool_poll_seconds > 0:
            market = self.context.market_view
            pool = PoolReporter(
                rpc, self.pair, self.base_is_token0, s.symbol, market, self.fees, self.log
            )
            await pool.refresh()  # the first signal is checked against the real pool
            self._spawn(pool.run(s.pool_poll_seconds))
        balances = await self._starting_balances()
        if s.journal_path is not None:
            await self._reconcile_from_journal(Path(s.journal_path))
        self.subscribe(OrderRequest, self._on_order_request, name=f"{self.name}.orders")
        self._spawn(self._probe_chain())
        self._log_ready(balances)

    def _start_sending(self, rpc: JsonRpc) -> None:
        """Receipts, nonces, the signer's sender and approvals: what a live executor needs."""
        s = self.settings
        assert self.signer is not None
        self.receipts = ReceiptWatcher(rpc.provider, s.receipt_poll_seconds)
        self.receipts.start()
        self.nonces = NonceManager(self._pending_count)
        self.sender = Sender(rpc, self.signer, self.chain_id, self.nonces, self.receipts)
        self.approvals = Approvals(
            rpc,
            self.sender,
            self.fees,
            s.router,
            gas_padding=s.gas_padding,
            timeout_seconds=s.receipt_timeout_seconds,
        )

    async def _starting_balances(self) -> AccountBalances | None:
        """Read the account's balances for the start log; a live executor also publishes
        them for the portfolio and keeps reconciling them (:mod:`.balances`)."""
        s = self.settings
        if self.address is None:
            return None
        tokens = {self.base_name: s.base_token, self.quote_name: s.quote_token}
        if s.dry_run:
            return await read_balances(self.rpc, self.address, tokens)
        source = self.balance_source = AccountBalanceSource(
            self.rpc,
            self.address,
            s.symbol,
            tokens,
            self.bus,
            self.clock,
            self.log,
            in_flight=lambda: bool(self._signed),
            activity=lambda: self._activity,
        )
        engine_journals = self.context.components.of_type(Journal)
        journals = [*self._journal_paths, *(j.path for j in engine_journals)]
        starting, resumed = await source.publish_starting(list(dict.fromkeys(journals)))
        catching_up = next((j.caught_up for j in engine_journals if not j.caught_up.is_set()), None)
        self._spawn(source.run(s.reconcile_seconds, catching_up, resumed=resumed))
        return AccountBalances(
            starting.account, starting.block, starting.eth_wei, dict(starting.balances)
        )

    def _log_ready(self, balances: AccountBalances | None) -> None:
        """The start, for the operator: account, chain, balances and the limits in force
        here (the risk manager logs its own)."""
        s = self.settings
        shown: dict[str, str] = {}
        if balances is not None:
            shown["ETH"] = Token("ETH", 18).format(balances.eth_wei)
            decimals = {self.base_name: self.base_decimals, self.quote_name: self.quote_decimals}
            for name, units in balances.tokens.items():
                shown[name] = Token(name, decimals[name]).format(units)
        mode = "dry_run" if s.dry_run else "live"
        real = self.chain_id != LOCAL_DEV_CHAIN_ID
        log = self.log.warning if real and not s.dry_run else self.log.info
        log(
            "executor.ready",
            mode=mode,
            account=self.address,
            chain_id=self.chain_id,
            real_funds=real and not s.dry_run,
            rpc=public_url(s.rpc_url),
            symbol=s.symbol,
            pair=self.pair,
            balances=shown,
            max_fee_gwei=s.max_fee_gwei,
            priority_fee_gwei=s.priority_fee_gwei,
            deadline_seconds=s.deadline_seconds,
            reconcile_seconds=None if s.dry_run else s.reconcile_seconds,
        )

    def _use_signer(self, signer: Signer) -> None:
        self.signer = signer
        self.address = signer.address

    def _take_local_chain(self, name: str) -> None:
        """Trade on a ``local_chain`` component: its node, contracts and dev account."""
        chain = self.context.components.find(LocalChain, name)
        if chain is None or chain.deployment is None:
            raise RuntimeError(
                f"chain {name!r} is not a started local_chain component: "
                "name it in this executor's depends_on"
            )
        self._chain = chain
        if self.settings.dry_run:
            self.address = self.settings.account or chain.trader.address
        else:
            self._use_signer(chain.trader)
        self._redactor = self._redactor.adding(
            secret.get_secret_value() for secret in chain.secret_values()
        )
        d = chain.deployment
        self.settings = self.settings.model_copy(
            update={
                "rpc_url": chain.rpc_url,
                "chain_id": d.chain_id,
                "router": d.router,
                "base_token": d.base_token,
                "quote_token": d.quote_token,
            }
        )

    async def _reconcile_from_journal(self, path: Path) -> None:
        """Learn this market's journalled orders, so a resumed run never sends one again,
        and settle those an earlier run sent but never saw settle.

        While the journal catches up (the engine re-derives what it holds), a journalled
        order's request is answered with its journalled outcome events, not a swap; the
        swaps still unsettled are settled once the catch-up is over, so their fills land
        after everything the journal already holds, as they would have."""
        self._history = await asyncio.to_thread(journal_history, path, self.settings.symbol)
        unsettled = [
            record
            for events in self._history.values()
            if not any(isinstance(e, OrderFilled | OrderFailed) for e in events)
            for record in submitted_records(events)
        ]
        self._journal = journal = journal_for(self.context.components, path)
        if self.dry_run is not None:
            if unsettled:  # a dry run never sends, so it cannot follow them either
                self.log.warning(
                    "executor.unsettled_swaps_left",
                    orders=sorted({r.order_id for r in unsettled}),
                    detail="swaps an earlier live run sent are still unsettled: a live run "
                    "settles them",
                )
            return
        if journal is not None and not journal.caught_up.is_set():
            self._spawn(self._reconcile_after_catch_up(journal.caught_up, unsettled))
        elif unsettled:
            await self._reconcile_and_log(unsettled)

    async def _reconcile_after_catch_up(
        self, caught_up: asyncio.Event, records: list[SubmittedRecord]
    ) -> None:
        await caught_up.wait()
        if records:
            await self._reconcile_and_log(records)

    async def _reconcile_and_log(self, records: list[SubmittedRecord]) -> None:
        statuses = await self.reconcile(records)
        orders = {order_id: str(status) for order_id, status in statuses.items()}
        self.log.warning("executor.reconciled", orders=orders)

    async def _replay_journalled(self, request: OrderRequest) -> None:
        """Re-publish what the journal holds of an order an earlier run handled."""
        self.log.info("order.replayed_from_journal", order_id=request.order_id)
        for event in self._history[request.order_id]:
            if self._journal is not None:
                await self._journal.turn_of(event)  # where the original run had it
            await self.bus.publish(event)
            if isinstance(event, OrderFilled | OrderFailed):
                filled = isinstance(event, OrderFilled)
                status = OrderStatus.FILLED if filled else OrderStatus.FAILED
                self.orders[request.order_id] = TrackedOrder(
                    request.order_id, request.correlation_id, status=status
                )

    async def on_stop(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        receipts: ReceiptWatcher | None = getattr(self, "receipts", None)  # None: start failed
        if receipts is not None:
            await receipts.stop()
        if self._rpc is not None:
            await self._rpc.disconnect()

    async def _pending_count(self) -> int:
        return await self.rpc.transaction_count(self.address, "pending")

    async def _latest_block(self) -> tuple[int, int]:
        return await self.rpc.latest_base_fee_and_time()

    # -- orders ------------------------------------------------------------------------

    def _on_order_request(self, request: OrderRequest) -> None:
        """Runs each order in its own task so orders proceed concurrently."""
        self._spawn(self.execute(request))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def pending_count(self) -> int:
        return sum(1 for o in self.orders.values() if o.status is OrderStatus.PENDING)

    def oldest_pending_seconds(self) -> float:
        """How long the longest-PENDING order has been PENDING in this process; 0 if none."""
        since = [
            o.pending_since
            for o in self.orders.values()
            if o.status is OrderStatus.PENDING and o.pending_since is not None
        ]
        return time.monotonic() - min(since) if since else 0.0

    def _update_health(self) -> None:
        """DEGRADED while the node does not answer or orders are PENDING (receipts not
        arriving), RUNNING again after: /ready shows whether the chain is reachable."""
        if self.state not in ("RUNNING", "DEGRADED"):
            return
        problems = [self._chain_problem] if self._chain_problem else []
        if pending := self.pending_count():
            problems.append(f"{pending} order(s) PENDING: receipts not arriving in time")
        if problems:
            self.degrade("; ".join(problems))
        else:
            self.recover()

    async def _probe_chain(self) -> None:
        """Ask the node for its block number every ``health_check_seconds``; an answer
        slower than half an interval counts as none, so a node that dies right after a
        probe is reported by the next one, within two intervals."""
        s = self.settings
        timeout = min(s.rpc_timeout_seconds, s.health_check_seconds / 2)
        while True:
            await asyncio.sleep(s.health_check_seconds)
            try:
                async with asyncio.timeout(timeout):
                    await self.rpc.request("eth_blockNumber", [])
                problem = None
            except (*RPC_ERRORS, RpcError) as exc:
                problem = f"chain unreachable at {public_url(s.rpc_url)}: {type(exc).__name__}"
            if problem != self._chain_problem:
                self._chain_problem = problem
                self._update_health()

    def order_status(self, order_id: str) -> OrderStatus | None:
        order = self.orders.get(order_id)
        return order.status if order else None

    def status(self) -> dict[str, Any]:
        """For GET /status: the account, the pool, and the orders in flight."""
        by_status: dict[str, int] = {}
        for order in self.orders.values():
            by_status[str(order.status)] = by_status.get(str(order.status), 0) + 1
        return {
            "symbol": self.settings.symbol,
            "mode": "dry_run" if self.settings.dry_run else "live",
            "account": getattr(self, "address", None),
            "chain_id": getattr(self, "chain_id", None),
            "pair": getattr(self, "pair", None),
            "orders": by_status,
            "chain_problem": self._chain_problem,
        }

    async def execute(self, request: OrderRequest) -> None:
        """Quote, send and settle one order; never raises (failures are OrderFailed)."""
        if request.order_id in self.orders:
            self.log.warning("order.duplicate_ignored", order_id=request.order_id)
            return
        if request.order_id in self._history:
            # A resumed run re-derives orders an earlier run already sent: never again.
            if request.order_id not in self._replayed:
                self._replayed.add(request.order_id)
                await self._replay_journalled(request)
            return
        order = TrackedOrder(request.order_id, request.correlation_id)
        self.orders[request.order_id] = order
        try:
            if self.dry_run is not None:
                await self._fill_on_paper(order, request)
            elif await self._submit(order, request):
                await self._settle(order)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.log.error("order.internal_error", order_id=order.order_id, exc_info=exc)
            if order.sent and order.status not in TERMINAL:
                # Sent: it may still be mined, so it is never reported failed here; it
                # stays PENDING (DEGRADED health) until reconcile settles it.
                order.mark_pending()
                self._update_health()
                return
            await self._fail(order, OrderFailReason.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")

    def _path(self, request: OrderRequest) -> list[str]:
        s = self.settings
        if request.side == "BUY":
            return [s.quote_token, s.base_token]
        return [s.base_token, s.quote_token]

    def _swap_data(self, amount_in: int, min_out: int, path: list[str], deadline: int) -> str:
        recipient = self.address or "0x" + "00" * 20  # a dry run without an account
        args = [amount_in, min_out, path, recipient, deadline]
        return calldata(SWAP_EXACT_TOKENS, SWAP_TYPES, args)

    async def _pool_settled(self, order: TrackedOrder) -> bool:
        """On a local chain: wait for the arbitrage step of this bar (False: failed)."""
        if self._chain is None:
            return True
        try:
            await self._chain.pool_settled()  # trade the pool as of this bar's close
        except TimeoutError:
            await self._fail(
                order, OrderFailReason.POOL_NOT_SETTLED, "an arbitrage step of an earlier bar hangs"
            )
            return False
        return True

    async def _fill_on_paper(self, order: TrackedOrder, request: OrderRequest) -> None:
        """A dry run's order: quoted and estimated on the real pool (:mod:`.dry_run`),
        filled on paper at exactly the router's quote; nothing is signed or sent."""
        assert self.dry_run is not None
        s = self.settings
        problem = order_problem(request, s.symbol)
        if problem is not None:
            await self._fail(order, problem.reason, problem.detail)
            return
        if not await self._pool_settled(order):
            return
        path = self._path(request)
        try:
            async with asyncio.timeout(s.quote_timeout_seconds):
                fees = await self.fees.current()
                gas_price = min(
                    fees.max_fee_per_gas, await self.fees.base_fee() + fees.max_priority_fee_per_gas
                )
                now = self.fees.chain_time() if self._chain_deadlines else self.clock.timestamp()
                deadline = int(now) + s.deadline_seconds
                quote = await self.dry_run.quote(
                    request, path, lambda a, m, p: self._swap_data(a, m, p, deadline)
                )
        except TimeoutError:
            await self._fail(
                order,
                OrderFailReason.QUOTE_TIMEOUT,
                f"dry run: not quoted within {s.quote_timeout_seconds} s",
            )
            return
        except DryRunRejected as exc:
            await self._fail(order, exc.reason, exc.detail)
            return
        except Exception as exc:
            await self._fail_preflight(order, request, path[0], exc)
            return
        venue_id = f"dry-run-{request.order_id}"  # the same on a resumed run
        now_ns = self.clock.timestamp_ns()
        stamp = {"ts_event": now_ns, "ts_init": now_ns, "correlation_id": request.correlation_id}
        await self.bus.publish(
            OrderSubmitted(**stamp, order_id=request.order_id, venue_order_id=venue_id)
        )
        self.stats.submitted += 1
        if request.side == "BUY":
            base_units, quote_units = quote.amount_out, request.amount_in
        else:
            base_units, quote_units = request.amount_in, quote.amount_out
        order.status = OrderStatus.FILLED
        self.stats.filled += 1
        if quote.note:
            self.log.info("order.dry_run_gas_assumed", order_id=order.order_id, note=quote.note)
        await self.bus.publish(
            OrderFilled(
                **stamp,
                order_id=request.order_id,
                symbol=s.symbol,
                side=request.side,
                amount_in=request.amount_in,
                amount_out=quote.amount_out,
                price=quote_per_base(
                    base_units, quote_units, self.base_decimals, self.quote_decimals
                ),
                fee_paid=swap_fee(request.amount_in),
                gas_used=quote.gas_used,
                gas_cost_wei=quote.gas_used * gas_price,
                venue_order_id=venue_id,
                detail=self._redactor.scrub(quote.note),
            )
        )

    async def _submit(self, order: TrackedOrder, request: OrderRequest) -> bool:
        """Send the swap; False (after publishing OrderFailed) if it was not sent, or not
        signed within ``quote_timeout_seconds`` (the announcer lifts that deadline)."""
        seconds = self.settings.quote_timeout_seconds
        try:
            async with asyncio.timeout(seconds) as quote_deadline:
                return await self._quote_and_send(order, request, quote_deadline)
        except TimeoutError:
            if not quote_deadline.expired():
                raise
            return await self._fail(
                order,
                OrderFailReason.QUOTE_TIMEOUT,
                f"not quoted and signed within {seconds} s: the node, the pool step or the "
                "nonce lock did not answer",
            )

    async def _quote_and_send(
        self, order: TrackedOrder, request: OrderRequest, quote_deadline: asyncio.Timeout
    ) -> bool:
        s = self.settings
        problem = order_problem(request, s.symbol)
        if problem is not None:
            return await self._fail(order, problem.reason, problem.detail)
        if not await self._pool_settled(order):
            return False
        path = self._path(request)
        token_in = path[0]
        try:
            if token_in not in self.approvals.approved:
                # Shielded from the deadline: an approval cut mid-send would use a nonce
                # unrecorded; it finishes in the background and the next order finds it.
                await asyncio.shield(self._spawn(self.approvals.ensure(token_in)))
        except ApprovalError as exc:
            return await self._fail(order, exc.reason, exc.detail)
        except SendRejectedError as exc:
            return await self._fail(order, exc.reason, f"approval: {exc.detail}")
        except (*RPC_ERRORS, FeeCapExceededError, RpcError) as exc:
            return await self._fail(
                order, OrderFailReason.APPROVAL_FAILED, f"{type(exc).__name__}: {exc}"
            )

        try:
            fees = await self.fees.current()  # cached: one block read per fee_ttl_seconds
        except Exception as exc:
            return await self._fail_preflight(order, request, token_in, exc)
        now = self.fees.chain_time() if self._chain_deadlines else self.clock.timestamp()
        deadline = int(now) + s.deadline_seconds
        explicit_min = request.min_amount_out > 0
        probe = self._swap_data(request.amount_in, request.min_amount_out, path, deadline)
        estimate = self.rpc.estimate_gas(self.address, s.router, probe)
        quote = (
            self._noop()
            if explicit_min
            else self.rpc.get_amounts_out(s.router, request.amount_in, path)
        )
        results = await asyncio.gather(estimate, quote, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                return await self._fail_preflight(order, request, token_in, result)
        gas_estimate, amounts = results
        if explicit_min:
            min_out = request.min_amount_out
        else:
            min_out = min_amount_out(amounts[-1], request.max_slippage_bps)  # type: ignore[index]
        data = self._swap_data(request.amount_in, min_out, path, deadline)
        gas = int(gas_estimate * s.gas_padding) + s.gas_extra  # type: ignore[operator]
        try:
            sent = await self.sender.send(
                s.router, data, gas, fees, on_signed=self._announcer(order, quote_deadline)
            )
        except SendRejectedError as exc:
            return await self._fail(order, exc.reason, exc.detail)
        order.sent.append(sent)
        order.tx_hashes.append(sent.tx_hash)
        order.nonce = sent.nonce
        order.status = OrderStatus.SUBMITTED
        self.stats.submitted += 1
        return True

    def _announcer(
        self, order: TrackedOrder, quote_deadline: asyncio.Timeout | None = None
    ) -> OnSigned:
        """Publishes ``OrderSubmitted`` for a signed transaction before it is sent: the
        journal commits it at once, so no swap can be out there without a record. If
        the journal could not write it (the bus withheld it), nothing is sent.

        It lifts the order's ``quote_deadline`` first: from here on the swap may reach
        the node, so it is followed to its outcome, never cancelled half-sent. (It runs
        synchronously after an await that returned normally, so the deadline cannot
        have fired in between.)"""

        async def announce(nonce: int, tx_hash: str) -> None:
            if quote_deadline is not None:
                quote_deadline.reschedule(None)
            self._signed.add(order.order_id)  # no balance reading until it is settled
            self._activity += 1
            seq = await self._publish_submitted(order, nonce, tx_hash)
            if self.bus.was_withheld(seq):
                raise SendRejectedError(
                    OrderFailReason.JOURNAL_UNAVAILABLE,
                    "the journal could not record the signed transaction: not sent",
                )

        return announce

    @staticmethod
    async def _noop() -> None:
        return None

    async def _fail_preflight(
        self, order: TrackedOrder, request: OrderRequest, token_in: str, exc: BaseException
    ) -> bool:
        """Explain why quoting/estimating failed, before anything was sent."""
        if isinstance(exc, RevertError):
            message = exc.message
            reason = reason_code(message)
            if reason == OrderFailReason.TRANSFER_FROM_FAILED:
                reason, message = await self._diagnose_transfer(
                    token_in, request.amount_in, message
                )
            return await self._fail(order, reason, message)
        if isinstance(exc, FeeCapExceededError):
            return await self._fail(order, OrderFailReason.GAS_PRICE_ABOVE_CAP, str(exc))
        if isinstance(exc, RPC_ERRORS):
            return await self._fail(
                order, OrderFailReason.RPC_UNAVAILABLE, f"{type(exc).__name__}: {exc}"
            )
        if isinstance(exc, RpcError):
            return await self._fail(order, OrderFailReason.RPC_ERROR, exc.message)
        raise exc

    async def _diagnose_transfer(self, token: str, amount: int, message: str) -> tuple[str, str]:
        """Turn the router's TRANSFER_FROM_FAILED into balance or allowance."""
        try:
            balance = await self.approvals.balance(token)
            allowance = await self.approvals.allowance(token)
        except Exception:
            return OrderFailReason.TRANSFER_FROM_FAILED, message
        if balance < amount:
            return (
                OrderFailReason.INSUFFICIENT_BALANCE,
                f"balance {balance} < amount_in {amount} of {token}",
            )
        if allowance < amount:
            self.approvals.forget(token)
            return (
                OrderFailReason.INSUFFICIENT_ALLOWANCE,
                f"router allowance {allowance} < amount_in {amount} of {token}; "
                "the next order re-approves",
            )
        return OrderFailReason.TRANSFER_FROM_FAILED, message

    # -- settling ----------------------------------------------------------------------

    async def _settle(self, order: TrackedOrder) -> None:
        """Wait for the receipt; after the timeout the order is PENDING and polled."""
        s = self.settings
        receipt = await self._wait_receipt(order, s.receipt_timeout_seconds)
        if receipt is None:
            order.mark_pending()
            self.log.warning(
                "order.pending", order_id=order.order_id, nonce=order.nonce, tx=order.tx_hashes
            )
            self._update_health()
        while receipt is None:
            receipt = await self._wait_receipt(order, s.pending_poll_seconds)
            if receipt is None:
                try:
                    receipt = await self._check_chain(order)
                except _Dropped as exc:
                    await self._fail(order, exc.reason, str(exc))
                    return
            if receipt is None:
                await self._maybe_replace(order)
        await self._finish(order, receipt)

    async def _wait_receipt(self, order: TrackedOrder, seconds: float) -> Receipt | None:
        futures = [self.receipts.watch(h) for h in order.tx_hashes]
        done, _ = await asyncio.wait(futures, timeout=seconds, return_when="FIRST_COMPLETED")
        for future in done:
            if not future.cancelled():
                return future.result()
        return None

    async def _check_chain(self, order: TrackedOrder) -> Receipt | None:
        """Ask the node directly; raise _Dropped if another transaction took the nonce."""
        assert order.nonce is not None
        try:
            found = await self.receipts.fetch(order.tx_hashes)
            if found:
                return next(iter(found.values()))
            mined_count = await self.rpc.transaction_count(self.address, "latest")
            if mined_count > order.nonce:
                found = await self.receipts.fetch(order.tx_hashes)
                if found:
                    return next(iter(found.values()))
                raise _Dropped(
                    OrderFailReason.DROPPED,
                    f"nonce {order.nonce} was used by a transaction not sent for it",
                )
            if not await self._known_to_node(order.tx_hashes):
                if not order.sent:
                    # Journalled by an earlier process that died before sending it (the
                    # journal is written first): its nonce is free and the node does not
                    # hold it, so nothing can ever mine it.
                    raise _Dropped(
                        OrderFailReason.NOT_SENT, f"nonce {order.nonce}: the node never got it"
                    )
                await self.sender.rebroadcast(order.sent[-1])  # a send that never arrived
        except (*RPC_ERRORS, RpcError) as exc:
            self.log.info("order.still_pending", order_id=order.order_id, error=type(exc).__name__)
        return None

    async def _known_to_node(self, tx_hashes: list[str]) -> bool:
        found = await asyncio.gather(*(self.rpc.get_transaction(h) for h in tx_hashes))
        return any(tx is not None for tx in found)

    async def _maybe_replace(self, order: TrackedOrder) -> None:
        s = self.settings
        if not (s.replace_after_seconds and order.can_replace and order.sent):
            return
        last = order.sent[-1]
        if time.monotonic() - last.sent_at < s.replace_after_seconds:
            return
        try:
            current = await self.fees.current()
        except (*RPC_ERRORS, RpcError, FeeCapExceededError):
            return
        bumped = self.fees.bumped(last.fees, s.replacement_fee_bump)
        if bumped is None:
            order.can_replace = False  # at the cap: keep waiting for the one we have
            return
        fees = max(bumped, current, key=lambda f: f.max_fee_per_gas)
        try:
            replacement = await self.sender.replace(last, fees, on_signed=self._announcer(order))
        except SendRejectedError as exc:  # not journalled, not sent: keep waiting on ``last``
            self.log.warning("order.replace_not_sent", order_id=order.order_id, reason=exc.reason)
            return
        if replacement is None:
            return
        order.sent.append(replacement)
        order.tx_hashes.append(replacement.tx_hash)
        self.stats.replacements += 1
        self.log.warning(
            "order.replaced",
            order_id=order.order_id,
            nonce=order.nonce,
            tx=replacement.tx_hash,
            max_fee_gwei=fees.max_fee_per_gas / GWEI,
        )

    async def _finish(self, order: TrackedOrder, receipt: Receipt) -> None:
        """Publish the fill or the failure of a mined transaction, exactly once."""
        if order.status in TERMINAL:
            return
        for sent in order.sent:
            if sent.tx_hash == receipt.tx_hash:
                self.stats.observe_latency(time.monotonic() - sent.sent_at)
        self.stats.gas_paid_wei += receipt.gas_used * receipt.effective_gas_price
        for tx_hash in order.tx_hashes:
            if tx_hash != receipt.tx_hash:
                self.receipts.forget(tx_hash)
        if order.nonce is not None:
            self.nonces.mined(order.nonce)
        if receipt.status != 1:
            reason, detail = await self._revert_reason(receipt)
            await self._fail(order, reason, detail, receipt.tx_hash)
            return
        swap = swap_from_receipt(receipt, self.pair, self.base_is_token0)
        if swap is None:
            await self._fail(
                order, OrderFailReason.NO_SWAP_EVENT, f"{receipt.tx_hash} emitted no Swap"
            )
            return
        was_pending = order.status is OrderStatus.PENDING
        order.status = OrderStatus.FILLED
        self.stats.filled += 1
        if was_pending:
            self._update_health()
        now = self.clock.timestamp_ns()
        await self.bus.publish(
            OrderFilled(
                ts_event=now,
                ts_init=now,
                correlation_id=order.correlation_id,
                order_id=order.order_id,
                symbol=self.settings.symbol,
                side=swap.side,
                amount_in=swap.amount_in,
                amount_out=swap.amount_out,
                price=quote_per_base(
                    swap.base_amount, swap.quote_amount, self.base_decimals, self.quote_decimals
                ),
                fee_paid=swap_fee(swap.amount_in),
                gas_used=receipt.gas_used,
                gas_cost_wei=receipt.gas_used * receipt.effective_gas_price,
                venue_order_id=receipt.tx_hash,
            )
        )
        self._settled(order)
        if self.balance_source is not None:
            self.balance_source.wake()  # reconcile the book with the chain after the fill

    def _settled(self, order: TrackedOrder) -> None:
        """The order's outcome is published: balances may be read again."""
        self._signed.discard(order.order_id)
        self._activity += 1

    async def _revert_reason(self, receipt: Receipt) -> tuple[str, str]:
        reason, detail = await replay_revert(self.rpc, receipt)
        self.log.info("order.reverted", tx=receipt.tx_hash, reason=reason)
        return reason, detail

    # -- publishing --------------------------------------------------------------------

    async def _publish_submitted(self, order: TrackedOrder, nonce: int, tx_hash: str) -> int:
        now = self.clock.timestamp_ns()
        return await self.bus.publish(
            OrderSubmitted(
                ts_event=now,
                ts_init=now,
                correlation_id=order.correlation_id,
                order_id=order.order_id,
                venue_order_id=tx_hash,
                nonce=nonce,
            )
        )

    async def _fail(
        self, order: TrackedOrder, reason: str, detail: str = "", tx_hash: str = ""
    ) -> bool:
        """Publish OrderFailed once; returns False so callers can ``return await``."""
        if order.status in TERMINAL:
            return False
        reason = str(reason)  # a plain code, as events carry it
        was_pending = order.status is OrderStatus.PENDING
        order.status = OrderStatus.FAILED
        order.reason = reason
        self.stats.failed(reason)
        if was_pending:
            self._update_health()
        detail = self._redactor.scrub(detail, public=order.tx_hashes)[:500]
        self.log.info("order.failed", order_id=order.order_id, reason=reason, tx=tx_hash)
        now = self.clock.timestamp_ns()
        await self.bus.publish(
            OrderFailed(
                ts_event=now,
                ts_init=now,
                correlation_id=order.correlation_id,
                order_id=order.order_id,
                reason=reason,
                detail=detail,
            )
        )
        self._settled(order)
        return False

    # -- crash recovery ----------------------------------------------------------------

    async def reconcile(self, submitted: Iterable[SubmittedRecord]) -> dict[str, OrderStatus]:
        """Settle transactions sent before a restart, from their journalled records.

        Mined ones publish their fill (or failure) now; those still unmined are
        watched as PENDING; none is ever sent again. Orders this executor already
        tracks are left alone, so a record seen twice is settled once.
        """
        by_order: dict[str, list[SubmittedRecord]] = {}
        for record in submitted:
            by_order.setdefault(record.order_id, []).append(record)
        statuses: dict[str, OrderStatus] = {}
        for order_id, records in by_order.items():
            if order_id in self.orders:
                statuses[order_id] = self.orders[order_id].status
                continue
            order = TrackedOrder(
                order_id,
                status=OrderStatus.PENDING,
                nonce=records[-1].nonce,  # an earlier attempt may have been refused
                tx_hashes=[r.tx_hash.lower() for r in records],
                can_replace=False,  # we do not hold the signed payload: wait, never re-send
            )
            self.orders[order_id] = order
            self._signed.add(order_id)
            try:
                receipt = await self._check_chain(order)
            except _Dropped as exc:
                await self._fail(order, exc.reason, str(exc))
                receipt = None
            if receipt is not None:
                await self._finish(order, receipt)
            elif order.status is OrderStatus.PENDING:
                self.log.warning("order.pending", order_id=order_id, nonce=order.nonce)
                self._spawn(self._settle(order))
            statuses[order_id] = order.status
        self._update_health()
        return statuses
