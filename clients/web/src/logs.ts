// The log tail of a job page: the FL server's or one client's log, followed live (StreamLogs, follow) while the
// job runs. One log is followed at a time: choosing another source ends the previous stream first.
import type { MessageInitShape } from "@bufbuild/protobuf";
import { LogSourceSchema } from "../../typescript/src/gen/florist/v1/training_service_pb.js";
import { type Api } from "./api.js";
import { h } from "./dom.js";
import { isAborted } from "./errors.js";

const KEEP_CHARS = 200_000; // the tail a page keeps; older text is dropped

export class LogTail {
  readonly element: HTMLElement;
  private readonly text: HTMLPreElement;
  private readonly picker: HTMLSelectElement;
  private following: AbortController | undefined;
  private follow = false;

  constructor(
    private readonly api: Api,
    private readonly jobId: string,
    clients: number,
    private readonly page: AbortSignal,
    private readonly fail: (error: unknown) => void,
  ) {
    this.text = h("pre", { class: "log", "data-log": "", tabindex: 0 });
    const options = [h("option", { value: "server" }, "FL server")];
    for (let i = 0; i < clients; i++) {
      options.push(h("option", { value: String(i) }, `client ${i}`));
    }
    this.picker = h("select", { "aria-label": "log source", onchange: () => this.show() }, ...options);
    // Hidden until the job has started: before that there is no log to show (a queued job may never have one).
    this.element = h("section", { class: "panel", hidden: true }, h("h2", {}, "Log ", this.picker), this.text);
    page.addEventListener("abort", () => this.following?.abort());
  }

  /** (Re)starts the stream of the chosen source from its beginning; `follow` while the job may still write. */
  show(follow = this.follow): void {
    this.follow = follow;
    this.element.hidden = false;
    this.following?.abort();
    const following = new AbortController();
    this.following = following;
    this.text.textContent = "";
    const chosen = this.picker.value;
    const source: MessageInitShape<typeof LogSourceSchema> =
      chosen === "server"
        ? { source: { case: "server", value: true } }
        : { source: { case: "clientIndex", value: Number(chosen) } };
    void this.read(source, following.signal);
  }

  private async read(source: MessageInitShape<typeof LogSourceSchema>, signal: AbortSignal): Promise<void> {
    try {
      const request = { jobId: this.jobId, source, follow: this.follow };
      for await (const chunk of this.api.training.streamLogs(request, { signal })) {
        this.append(chunk.text);
      }
    } catch (error) {
      if (!isAborted(error) && !this.page.aborted) {
        this.fail(error);
      }
    }
  }

  private append(text: string): void {
    const atBottom = this.text.scrollTop + this.text.clientHeight >= this.text.scrollHeight - 4;
    const all = (this.text.textContent ?? "") + text;
    this.text.textContent = all.length > KEEP_CHARS ? all.slice(all.length - KEEP_CHARS) : all;
    if (atBottom) {
      this.text.scrollTop = this.text.scrollHeight;
    }
  }
}
