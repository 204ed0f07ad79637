// A Java client for kwarp's outgoing tests.
//   Client tcp HOST PORT   java.net.Socket, print the first line
//   Client http URL        java.net.http.HttpClient, print the body
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.net.Socket;
import java.net.URI;
import java.net.http.HttpClient;
import java.net.http.HttpRequest;
import java.net.http.HttpResponse;
import java.time.Duration;

public class Client {
    public static void main(String[] args) throws Exception {
        if (args[0].equals("tcp")) {
            try (Socket s = new Socket(args[1], Integer.parseInt(args[2]))) {
                System.out.println(new BufferedReader(new InputStreamReader(s.getInputStream())).readLine());
            }
        } else if (args[0].equals("http")) {
            HttpClient c = HttpClient.newBuilder().connectTimeout(Duration.ofSeconds(20)).build();
            HttpResponse<String> r = c.send(HttpRequest.newBuilder(URI.create(args[1])).build(), HttpResponse.BodyHandlers.ofString());
            System.out.println(r.body());
        } else {
            throw new IllegalArgumentException("unknown mode " + args[0]);
        }
    }
}
