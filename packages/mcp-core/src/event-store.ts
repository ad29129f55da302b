import type { JSONRPCMessage } from '@modelcontextprotocol/sdk/types.js';
import type { EventId, EventStore, StreamId } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

/**
 * Resumability for one session's SSE streams: the last `maxEvents` messages sent on any of the
 * session's streams, so a client that lost its connection can reconnect with `Last-Event-ID`
 * and receive what it missed on that stream. Bounded: the oldest events go first, and a
 * client asking to resume from an event that is gone gets nothing replayed (it should
 * re-read what it needs).
 */
export class BoundedEventStore implements EventStore {
  private readonly events: { id: EventId; stream: StreamId; message: JSONRPCMessage }[] = [];
  private head = 0;
  private seq = 0;

  constructor(readonly maxEvents = 1000) {}

  async storeEvent(streamId: StreamId, message: JSONRPCMessage): Promise<EventId> {
    const id = `${streamId}:${++this.seq}`;
    this.events.push({ id, stream: streamId, message });
    if (this.events.length - this.head > this.maxEvents) {
      this.head++;
      if (this.head > 1024 && this.head * 2 > this.events.length) {
        this.events.splice(0, this.head);
        this.head = 0;
      }
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
      if (e.stream === stream) await send(e.id, e.message);
    }
    return stream;
  }

  get size(): number {
    return this.events.length - this.head;
  }
}
