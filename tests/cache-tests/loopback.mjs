// Bind every server the suite starts to loopback only.
import net from 'node:net'
const listen = net.Server.prototype.listen
net.Server.prototype.listen = function (...args) {
  if (typeof args[0] === 'number' || typeof args[0] === 'string') {
    return listen.call(this, { port: Number(args[0]), host: '127.0.0.1' }, ...args.slice(1).filter(a => typeof a === 'function'))
  }
  return listen.apply(this, args)
}
