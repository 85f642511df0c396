/** A TCP port on 127.0.0.1 that was free a moment ago (for servers a test configures itself). */
export { freeLocalPort as freePort } from '../../cli/nats-server'
