import client from 'prom-client';

/** The values the gauges read at each scrape. */
export interface ScrapeSources {
  readLagMs: () => number;
  tickSpacing: () => number;
}

/** Prometheus metrics of one node. Each instance has its own registry, so tests can run several apps. */
export class Metrics {
  readonly registry = new client.Registry();
  readonly connections: client.Gauge;
  readonly viewers: client.Gauge<'session_id'>;
  readonly messages: client.Counter;
  readonly sessionHearts: client.Counter;
  readonly messageLikes: client.Counter<'action'>;
  readonly errors: client.Counter<'code'>;
  readonly deliveryLatency: client.Histogram;
  readonly commitBatchSize: client.Histogram;
  readonly commitDuration: client.Histogram;
  readonly slowConsumers: client.Counter;
  readonly tokenVerifications: client.Counter<'result'>;
  readonly gapFills: client.Counter;
  readonly redisUp: client.Gauge;
  readonly redisFallbacks: client.Counter<'what'>;
  readonly busDropped: client.Counter;
  readonly tickSpacing: client.Gauge;
  readonly readLag: client.Gauge;
  /** What the gauges read at each scrape (see `readAtScrape`). */
  #sources: ScrapeSources = { readLagMs: () => 0, tickSpacing: () => 1 };

  /**
   * Where the gauges that are read at each scrape take their values: `drawchat_read_lag_seconds` from `readLagMs`
   * (how late the node may be reading its sockets, see `ReadLag`; 0 until set) and `drawchat_tick_spacing_factor`
   * from `tickSpacing` (the hub's; 1 until set).
   */
  readAtScrape(sources: Partial<ScrapeSources>): void {
    this.#sources = { ...this.#sources, ...sources };
  }

  constructor(options: { collectDefault?: boolean } = {}) {
    const sources = () => this.#sources;
    const registers = [this.registry];
    this.connections = new client.Gauge({
      name: 'drawchat_open_connections',
      help: 'Open WebSocket connections on this node',
      registers,
    });
    this.viewers = new client.Gauge({
      name: 'drawchat_viewers',
      help: 'Distinct viewers of the active session (across all nodes when REDIS_URL is set)',
      labelNames: ['session_id'],
      registers,
    });
    this.messages = new client.Counter({
      name: 'drawchat_messages_total',
      help: 'Chat messages committed by this node',
      registers,
    });
    this.sessionHearts = new client.Counter({
      name: 'drawchat_session_likes_total',
      help: 'Session hearts committed by this node',
      registers,
    });
    this.messageLikes = new client.Counter({
      name: 'drawchat_message_likes_total',
      help: 'Message likes and unlikes committed by this node',
      labelNames: ['action'],
      registers,
    });
    this.errors = new client.Counter({
      name: 'drawchat_errors_total',
      help: 'Errors returned to clients, by error code',
      labelNames: ['code'],
      registers,
    });
    this.deliveryLatency = new client.Histogram({
      name: 'drawchat_message_delivery_seconds',
      help: 'Time from a message commit to its write to the sockets of a room',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
      registers,
    });
    this.commitBatchSize = new client.Histogram({
      name: 'drawchat_commit_batch_items',
      help: 'Writes per group-commit transaction',
      buckets: [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000],
      registers,
    });
    this.commitDuration = new client.Histogram({
      name: 'drawchat_commit_seconds',
      help: 'Duration of one group-commit transaction',
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    this.tickSpacing = new client.Gauge({
      name: 'drawchat_tick_spacing_factor',
      help: "Factor on busy rooms' gaps between ticks after a second of a saturated event loop (1: the usual pace)",
      registers,
      collect() {
        this.set(sources().tickSpacing());
      },
    });
    this.readLag = new client.Gauge({
      name: 'drawchat_read_lag_seconds',
      help: 'How late this node may read its sockets: time since its busy event loop last had a pause (0: in time)',
      registers,
      collect() {
        this.set(sources().readLagMs() / 1000);
      },
    });
    this.slowConsumers = new client.Counter({
      name: 'drawchat_slow_consumers_total',
      help: 'Sockets cut off because their send buffer stayed over the limit',
      registers,
    });
    this.tokenVerifications = new client.Counter({
      name: 'drawchat_token_verifications_total',
      help: 'Token checks by result',
      labelNames: ['result'],
      registers,
    });
    this.gapFills = new client.Counter({
      name: 'drawchat_gap_fill_messages_total',
      help: 'Messages read from the database because their publish from another node was late or lost',
      registers,
    });
    this.redisUp = new client.Gauge({
      name: 'drawchat_redis_up',
      help: '1 while Redis is reachable; 0 when it is away, and always 0 without REDIS_URL',
      registers,
    });
    this.redisFallbacks = new client.Counter({
      name: 'drawchat_redis_fallbacks_total',
      help: 'Limit checks answered by this node alone because Redis was away',
      labelNames: ['what'],
      registers,
    });
    this.busDropped = new client.Counter({
      name: 'drawchat_bus_dropped_total',
      help: 'Malformed inter-node messages dropped',
      registers,
    });
    if (options.collectDefault !== false)
      client.collectDefaultMetrics({ register: this.registry, prefix: 'drawchat_' });
  }

  /** Per-second rates are derived by Prometheus (`rate(drawchat_messages_total[1m])`). */
  async text(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
