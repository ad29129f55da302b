import { buildFilter, diagnoseTcpdump } from '../src';

/** What the worker tells a user when tcpdump cannot run, from tcpdump's own words. */

const o = { interface: 'eth0', tcpdumpPath: 'tcpdump' };

test('the filter is the user\'s AND-ed with the exclusion of the worker\'s own ports', () => {
  expect(buildFilter(undefined, [])).toBe('');
  expect(buildFilter('  ', [50151])).toBe('not (tcp port 50151)');
  expect(buildFilter('tcp port 80 or udp port 53', [50151])).toBe('(tcp port 80 or udp port 53) and not (tcp port 50151)');
});

test('tcpdump errors become instructions', () => {
  // The messages tcpdump 4.99 prints for each case.
  expect(diagnoseTcpdump("tcpdump: eth0: You don't have permission to perform this capture on that device\n(socket: Operation not permitted)\n", o, '')).toMatch(
    /may not capture on eth0.*Run the worker as root.*setcap cap_net_raw,cap_net_admin=eip.*NET_RAW and NET_ADMIN/,
  );
  expect(diagnoseTcpdump("tcpdump: can't parse filter expression: syntax error\n", o, '(tcp prt 80)')).toBe(
    'the capture filter is invalid: can\'t parse filter expression: syntax error (filter given to tcpdump: "(tcp prt 80)")',
  );
  expect(diagnoseTcpdump('tcpdump: eth9: No such device exists\n(No such device exists)\n', { ...o, interface: 'eth9' }, '')).toMatch(/cannot capture on interface "eth9".*tcpdump -D/);
  // A crash or a signal is not a configuration problem: the worker restarts tcpdump instead.
  expect(diagnoseTcpdump('tcpdump: listening on eth0, link-type EN10MB (Ethernet), snapshot length 262144 bytes\n', o, '')).toBeUndefined();
});
