// At most 3 server streams open per page: each holds one of the browser's 6 HTTP/1.1 connections to the origin,
// and the page's unary calls need the rest. Every stream the page opens goes through this budget (an interceptor
// on the transport); the count is on <html data-open-streams>, where tests read it.
import type { Interceptor, StreamResponse, UnaryResponse } from "@connectrpc/connect";

export const MAX_OPEN_STREAMS = 3;

export class StreamBudget {
  private open = 0;

  constructor(private readonly root: HTMLElement) {
    this.show();
  }

  /** The interceptor counting the streams of every call that has a response stream. */
  readonly interceptor: Interceptor = (next) => async (request) => {
    if (!request.stream) {
      return next(request);
    }
    this.acquire(request.method.name);
    let response: UnaryResponse | StreamResponse;
    try {
      response = await next(request);
    } catch (error) {
      this.release();
      throw error;
    }
    if (!response.stream) {
      this.release();
      return response;
    }
    return { ...response, message: this.counted(response.message) };
  };

  private async *counted<T>(messages: AsyncIterable<T>): AsyncIterable<T> {
    try {
      yield* messages;
    } finally {
      this.release();
    }
  }

  private acquire(method: string): void {
    if (this.open >= MAX_OPEN_STREAMS) {
      // A page that wants a fourth stream is a bug in the page: fail loudly rather than starve its other calls.
      throw new Error(`${method}: the page already has ${this.open} streams open`);
    }
    this.open += 1;
    this.show();
  }

  private release(): void {
    this.open -= 1;
    this.show();
  }

  private show(): void {
    this.root.dataset["openStreams"] = String(this.open);
  }
}
