# codeexec session driver for Ruby: cells are evaluated in one binding, so local
# variables persist; the value of a cell is its last expression's. Protocol as in driver.py.
require 'json'
require 'timeout'
proto = IO.new(0).dup
proto.binmode
$stdin.reopen('/dev/null')
STDOUT.sync = true
STDERR.sync = true
cell_binding = TOPLEVEL_BINDING.dup
loop do
  header = proto.gets or break
  nonce, timeout_ms, length = header.split
  code = proto.read(length.to_i).force_encoding('UTF-8')
  res = { 'status' => 'ok', 'value' => nil, 'error' => nil, 'display' => [] }
  begin
    v = Timeout.timeout(timeout_ms.to_i / 1000.0) { eval(code, cell_binding, 'cell', 1) }
    res['value'] = v.inspect unless v.nil?
  rescue Timeout::Error
    res['status'] = 'timeout'
  rescue NoMemoryError
    res['status'] = 'memory'
  rescue Exception => e
    res['status'] = 'error'
    res['error'] = { 'name' => e.class.name, 'message' => e.message }
    e.set_backtrace((e.backtrace || []).take_while { |l| l.start_with?('cell:') })
    $stderr.write(e.full_message(highlight: false))
  end
  $stdout.flush
  $stderr.flush
  STDOUT.write("\x1e#{nonce}#{JSON.generate(res)}\n")
end
