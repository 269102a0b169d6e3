// The exchange of a response, kept on the ServerResponse so that module-level listeners ('close', 'drain')
// and Node's clientError path find it without a closure per request.
export const kExchange = Symbol('tollgate.exchange')
