// Ask Jelly one question over Socket.IO. The same module runs in Node and in a browser
// (see index.html): tokens stream to onToken, the promise resolves to the final message.
import { io } from "socket.io-client";

export function ask(url, userToken, message, onToken = () => {}) {
  return new Promise((resolve, reject) => {
    const socket = io(url, { transports: ["websocket"], reconnection: false });
    const finish = (settle, value) => { socket.close(); settle(value); };
    socket.on("final_answer_token", ({ token }) => onToken(token));
    socket.on("final_message", (final) => finish(resolve, final)); // {message, sources}
    socket.on("error", ({ error }) => finish(reject, new Error(error)));
    socket.on("connect_error", (err) => finish(reject, err));
    socket.emit("user_message", { user_token: userToken, message, application: "js-example" });
  });
}
