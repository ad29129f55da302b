import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { EventId, EventStore, StreamId } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { messageJson } from './wire';

/** Default bound on the serialized size of a session's kept events. */
export const DEFAULT_RESUMABLE_BYTES = 4 * 1024 * 1024;

/**
 * Resumability for one session's SSE streams: the last messages sent on any of the session's
 * streams, so a client that lost its connection can reconnect with `Last-Event-ID` and receive
 * what it missed on that stream. Bounded by count (`maxEvents`) and by serialized size
 * (`maxBytes`, characters of JSON): the oldest events go first (the newest is always kept), and
 * a client asking to resume from an event that is gone gets nothing replayed (it should re-read
 * what it needs). Messages are kept as their JSON text, not as the objects sent: a page of
 * results is thousands of small objects that the garbage collector would otherwise trace and
 * move for as long as the event is kept, on every call.
 */
export class BoundedEventStore implements EventStore {
  private readonly events: (Event & { id: EventId; stream: StreamId })[] = [];
  private head = 0;
  private seq = 0;
  private chars = 0;

  constructor(
    readonly maxEvents = 1000,
    readonly maxBytes = DEFAULT_RESUMABLE_BYTES,
  ) {}

  async storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const id = `${streamId}:${++this.seq}`;
    const event = toEvent(message);
    this.events.push({ id, stream: streamId, ...event });
    this.chars += event.chars;
    while (this.size > 1 && (this.size > this.maxEvents || this.chars > this.maxBytes)) {
      this.chars -= this.events[this.head]!.chars;
      this.head++;
    }
    if (this.head > 1024 && this.head * 2 > this.events.length) {
      this.events.splice(0, this.head);
      this.head = 0;
    }
    return id;
  }

  async getStreamIdForEventId(eventId: EventId): Promise<StreamId | undefined> {
    const i = eventId.lastIndexOf(':');
    return i > 0 ? eventId.slice(0, i) : undefined;
  }

  async replayEventsAfter(lastEventId: EventId, { send }: { send: (eventId: EventId, message: JSONRPCMessage) => Promise<void> }): Promise<StreamId> {
    const stream = (await this.getStreamIdForEventId(lastEventId)) ?? '';
    let i = this.head;
    while (i < this.events.length && this.events[i]!.id !== lastEventId) i++;
    for (i++; i < this.events.length; i++) {
      const e = this.events[i]!;
      if (e.stream === stream) await send(e.id, fromEvent(e));
    }
    return stream;
  }

  /** Events kept. */
  get size(): number {
    return this.events.length - this.head;
  }

  /** Characters of JSON kept. */
  get bytes(): number {
    return this.chars;
  }
}

/** A message as its JSON text (the very text the transport writes: see `messageJson`). */
type Event = { json: string; chars: number };

function toEvent(message: JSONRPCMessage): Event {
  const json = messageJson(message);
  return { json, chars: json.length };
}

function fromEvent(e: Event): JSONRPCMessage {
  return JSON.parse(e.json) as JSONRPCMessage;
}
